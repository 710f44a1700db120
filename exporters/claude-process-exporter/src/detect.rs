//! Which processes are Claude Code, and what their descendants are: the rules of
//! docs/claude-process-exporter.md ("Detection"), as pure functions of what `/proc` says.
//!
//! The command line is looked at only to classify (print mode, `--bg-*` helpers, `cli.js`);
//! the environment only for variable *names*. Neither is kept, compared as a value, logged or
//! exported.

use std::path::Path;

use regex::Regex;

/// How an instance was installed, from its executable's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Install {
    Native,
    Npm,
    Vscode,
    Unknown,
}

impl Install {
    pub fn as_str(self) -> &'static str {
        match self {
            Install::Native => "native",
            Install::Npm => "npm",
            Install::Vscode => "vscode",
            Install::Unknown => "unknown",
        }
    }
}

/// Which rule made a process an instance (for tests and the debug log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Comm,
    VersionComm,
    NpmPackage,
    CliJs,
    Vscode,
    MatchComm,
    MatchExe,
}

/// A process that is a Claude Code instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub rule: Rule,
    pub install: Install,
    /// From the path or the process name; `None` when neither says (`package.json` is read
    /// by the caller for npm installs: see [`npm_package_dir`]).
    pub version: Option<String>,
}

/// The extra rules from `--match.comm` and `--match.exe`.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    pub comm: Option<Regex>,
    pub exe: Option<Regex>,
}

/// Role of a descendant of an instance (inherited by its own descendants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Tool,
    Mcp,
    Daemon,
    Other,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Tool, Role::Mcp, Role::Daemon, Role::Other];
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Tool => "tool",
            Role::Mcp => "mcp",
            Role::Daemon => "daemon",
            Role::Other => "other",
        }
    }
}

/// Environment names that mark a process as started by a Claude Code session.
pub const SESSION_MARKS: &[&str] = &[
    "CLAUDECODE",
    "CLAUDE_CODE_ENTRYPOINT",
    "CLAUDE_CODE_SESSION_ID",
];
/// Names the Bash tool sets for its shells (and only for them).
pub const TOOL_MARKS: &[&str] = &["CLAUDE_CODE_EXECPATH", "CLAUDE_PID"];
/// Set for stdio MCP servers (and hooks), not for the Bash tool's shells.
pub const MCP_MARK: &str = "CLAUDE_PROJECT_DIR";

const SHELLS: &[&str] = &[
    "sh", "bash", "zsh", "dash", "fish", "ksh", "mksh", "tcsh", "csh",
];

fn version_like(s: &str) -> bool {
    let mut parts = s.split('.');
    let ok =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    ok(parts.next())
        && ok(parts.next())
        && parts
            .next()
            .is_some_and(|p| p.starts_with(|c: char| c.is_ascii_digit()))
}

/// Whether a command line starts one of Claude Code's `--bg-*` helpers (a daemon of its
/// session, not an instance of its own).
pub fn is_helper(args: &[String]) -> bool {
    args.iter().skip(1).any(|a| a.starts_with("--bg-"))
}

/// Whether a command line runs Claude Code in print mode (`-p`, `--print`): a script.
pub fn headless(args: &[String]) -> bool {
    args.iter()
        .skip(1)
        .take_while(|a| a.as_str() != "--")
        .any(|a| a == "-p" || a == "--print" || a.starts_with("--print="))
}

/// The directory of the npm package `@anthropic-ai/claude-code` or
/// `@anthropic-ai/claude-code-<platform>` that `path` lies in.
pub fn npm_package_dir(path: &Path) -> Option<&Path> {
    let mut dir = path.parent();
    while let Some(d) = dir {
        let name = d.file_name()?.to_str()?;
        let scope = d
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str());
        if scope == Some("@anthropic-ai")
            && (name == "claude-code" || name.starts_with("claude-code-"))
        {
            return Some(d);
        }
        dir = d.parent();
    }
    None
}

/// The version named by a `.../claude/versions/<version>` path (the native installer's layout).
fn versions_dir_version(path: &Path) -> Option<String> {
    let comps: Vec<&str> = path.iter().filter_map(|c| c.to_str()).collect();
    comps.windows(3).find_map(|w| {
        (w[0] == "claude" && w[1] == "versions" && version_like(w[2])).then(|| w[2].to_owned())
    })
}

/// The version of a VS Code extension directory (`anthropic.claude-code-2.0.1-linux-x64`).
fn vscode_version(path: &Path) -> Option<String> {
    path.iter().filter_map(|c| c.to_str()).find_map(|c| {
        let rest = c.strip_prefix("anthropic.claude-code-")?;
        let v: String = rest.split('-').next()?.to_owned();
        version_like(&v).then_some(v)
    })
}

/// Decide whether a process is a Claude Code instance. `exe` is its executable (`None` when
/// unreadable), `args` its command line (`None` when not read or unreadable).
pub fn instance(
    comm: &str,
    exe: Option<&Path>,
    args: Option<&[String]>,
    extra: &Extra,
) -> Option<Found> {
    if args.is_some_and(is_helper) {
        return None; // a --bg-* helper is a daemon of its session, not an instance
    }
    let exe_str = exe.and_then(|p| p.to_str()).unwrap_or("");
    let install_of = |exe: Option<&Path>| match exe {
        Some(p)
            if p.to_str()
                .is_some_and(|s| s.ends_with("native-binary/claude")) =>
        {
            Install::Vscode
        }
        Some(p) if npm_package_dir(p).is_some() => Install::Npm,
        Some(_) => Install::Native,
        None => Install::Unknown,
    };
    let path_version = |exe: Option<&Path>| {
        exe.and_then(|p| versions_dir_version(p).or_else(|| vscode_version(p)))
    };
    if exe_str.ends_with("native-binary/claude") {
        return Some(Found {
            rule: Rule::Vscode,
            install: Install::Vscode,
            version: path_version(exe),
        });
    }
    if comm == "claude" || comm == "claude.exe" {
        return Some(Found {
            rule: Rule::Comm,
            install: install_of(exe),
            version: path_version(exe),
        });
    }
    if version_like(comm) {
        if let Some(v) = exe.and_then(versions_dir_version) {
            return Some(Found {
                rule: Rule::VersionComm,
                install: Install::Native,
                version: Some(v),
            });
        }
        if exe.and_then(npm_package_dir).is_some() {
            return Some(Found {
                rule: Rule::VersionComm,
                install: Install::Npm,
                version: Some(comm.to_owned()),
            });
        }
    }
    if exe.and_then(npm_package_dir).is_some() {
        return Some(Found {
            rule: Rule::NpmPackage,
            install: Install::Npm,
            version: None,
        });
    }
    if let Some(args) = args {
        if args
            .iter()
            .skip(1)
            .take(3)
            .any(|a| a.ends_with("@anthropic-ai/claude-code/cli.js"))
        {
            return Some(Found {
                rule: Rule::CliJs,
                install: Install::Npm,
                version: None,
            });
        }
    }
    if extra.comm.as_ref().is_some_and(|re| re.is_match(comm)) {
        return Some(Found {
            rule: Rule::MatchComm,
            install: install_of(exe),
            version: path_version(exe),
        });
    }
    if extra.exe.as_ref().is_some_and(|re| re.is_match(exe_str)) && !exe_str.is_empty() {
        return Some(Found {
            rule: Rule::MatchExe,
            install: install_of(exe),
            version: path_version(exe),
        });
    }
    None
}

/// Whether a process whose comm is `comm` needs its command line read to be classified as an
/// instance (the `cli.js` rule looks at node's arguments).
pub fn needs_cmdline(comm: &str, exe: Option<&Path>) -> bool {
    comm.starts_with("node")
        || exe
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("node"))
}

/// The role of a process started directly by an instance (or the top of an orphaned branch).
/// `env` holds the marker names found in its environment (`None`: unreadable).
pub fn role(comm: &str, helper: bool, env: Option<&[&str]>) -> Role {
    if helper {
        return Role::Daemon;
    }
    match env {
        Some(names) if names.iter().any(|n| TOOL_MARKS.contains(n)) => Role::Tool,
        Some(names) if names.contains(&MCP_MARK) => Role::Mcp,
        _ if SHELLS.contains(&comm) => Role::Tool,
        _ => Role::Other,
    }
}

/// Whether an environment's marker names say the process belongs to a Claude Code session.
pub fn session_marked(env: &[&str]) -> bool {
    env.iter().any(|n| SESSION_MARKS.contains(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<&Path> {
        Some(Path::new(s))
    }
    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }
    const NONE: Extra = Extra {
        comm: None,
        exe: None,
    };

    #[test]
    fn comm_claude_and_claude_exe() {
        let f = instance(
            "claude",
            p("/home/u/.local/share/claude/versions/2.1.197"),
            None,
            &NONE,
        )
        .unwrap();
        assert_eq!(
            (f.rule, f.install, f.version.as_deref()),
            (Rule::Comm, Install::Native, Some("2.1.197"))
        );
        let f = instance(
            "claude.exe",
            p("/usr/lib/node_modules/@anthropic-ai/claude-code/bin/claude.exe"),
            None,
            &NONE,
        )
        .unwrap();
        assert_eq!(
            (f.rule, f.install, f.version),
            (Rule::Comm, Install::Npm, None)
        );
        // Unreadable executable: still an instance, install unknown.
        let f = instance("claude", None, None, &NONE).unwrap();
        assert_eq!(f.install, Install::Unknown);
    }

    #[test]
    fn version_comm_needs_versions_dir_or_npm_package() {
        let f = instance(
            "2.1.197",
            p("/root/.local/share/claude/versions/2.1.197"),
            None,
            &NONE,
        )
        .unwrap();
        assert_eq!(
            (f.rule, f.version.as_deref()),
            (Rule::VersionComm, Some("2.1.197"))
        );
        let f = instance(
            "2.1.332",
            p("/x/node_modules/@anthropic-ai/claude-code-linux-x64/claude"),
            None,
            &NONE,
        )
        .unwrap();
        assert_eq!(
            (f.install, f.version.as_deref()),
            (Install::Npm, Some("2.1.332"))
        );
        // A version-named process elsewhere is not Claude Code.
        assert_eq!(
            instance("1.2.3", p("/opt/other/bin/tool"), None, &NONE),
            None
        );
    }

    #[test]
    fn npm_package_executable_with_any_name() {
        let f = instance(
            "MainThread",
            p("/usr/lib/node_modules/@anthropic-ai/claude-code-linux-arm64-musl/claude"),
            None,
            &NONE,
        )
        .unwrap();
        assert_eq!((f.rule, f.install), (Rule::NpmPackage, Install::Npm));
        // A sibling package is not Claude Code.
        assert_eq!(
            instance(
                "x",
                p("/n/node_modules/@anthropic-ai/sdk/bin/x"),
                None,
                &NONE
            ),
            None
        );
    }

    #[test]
    fn cli_js_under_node() {
        let a = args(&[
            "node",
            "/usr/lib/node_modules/@anthropic-ai/claude-code/cli.js",
            "-p",
            "hi",
        ]);
        let f = instance("node", p("/usr/bin/node"), Some(&a), &NONE).unwrap();
        assert_eq!((f.rule, f.install), (Rule::CliJs, Install::Npm));
        assert!(headless(&a));
        let other = args(&["node", "/srv/app/server.js"]);
        assert_eq!(
            instance("node", p("/usr/bin/node"), Some(&other), &NONE),
            None
        );
        assert!(needs_cmdline("node", None));
        assert!(!needs_cmdline("bash", p("/usr/bin/bash")));
    }

    #[test]
    fn vscode_native_binary() {
        let exe = "/home/u/.vscode/extensions/anthropic.claude-code-2.0.14-linux-x64/resources/native-binary/claude";
        let f = instance("claude", p(exe), None, &NONE).unwrap();
        assert_eq!(
            (f.rule, f.install, f.version.as_deref()),
            (Rule::Vscode, Install::Vscode, Some("2.0.14"))
        );
    }

    #[test]
    fn not_claude() {
        assert_eq!(
            instance("claude-monitor", p("/usr/bin/claude-monitor"), None, &NONE),
            None
        );
        assert_eq!(instance("bash", p("/usr/bin/bash"), None, &NONE), None);
        // A --bg-* helper is its session's daemon, not another instance.
        let a = args(&["claude", "--bg-sync"]);
        assert_eq!(
            instance("claude", p("/x/claude/versions/2.1.1"), Some(&a), &NONE),
            None
        );
        assert!(is_helper(&a));
        assert_eq!(role("claude", true, None), Role::Daemon);
    }

    #[test]
    fn extra_rules_from_flags() {
        let extra = Extra {
            comm: Some(Regex::new("^my-claude$").unwrap()),
            exe: Some(Regex::new("/opt/wrapped/").unwrap()),
        };
        assert_eq!(
            instance("my-claude", p("/usr/bin/x"), None, &extra)
                .unwrap()
                .rule,
            Rule::MatchComm
        );
        assert_eq!(
            instance("w", p("/opt/wrapped/bin/w"), None, &extra)
                .unwrap()
                .rule,
            Rule::MatchExe
        );
        assert_eq!(instance("w", None, None, &extra), None);
    }

    #[test]
    fn print_mode() {
        assert!(headless(&args(&["claude", "-p", "hello"])));
        assert!(headless(&args(&["claude", "--print"])));
        assert!(!headless(&args(&["claude", "--model", "opus"])));
        assert!(!headless(&args(&["claude", "--", "-p"])));
    }

    #[test]
    fn roles_from_environment_names() {
        assert_eq!(
            role("zsh", false, Some(&["CLAUDECODE", "CLAUDE_PID"])),
            Role::Tool
        );
        assert_eq!(
            role("sleep", false, Some(&["CLAUDE_CODE_EXECPATH"])),
            Role::Tool
        );
        assert_eq!(
            role(
                "python3",
                false,
                Some(&["CLAUDECODE", "CLAUDE_PROJECT_DIR"])
            ),
            Role::Mcp
        );
        assert_eq!(role("bash", false, None), Role::Tool);
        assert_eq!(role("node", false, Some(&[])), Role::Other);
        assert!(session_marked(&["CLAUDE_CODE_SESSION_ID"]));
        assert!(!session_marked(&["CLAUDE_PROJECT_DIR"]));
    }
}
