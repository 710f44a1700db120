//! `token-collector shell-init bash|zsh|fish`: prints a shell function `claude` that sends
//! non-interactive runs (`-p`/`--print` among the arguments before `--`, or stdout not a
//! terminal) through `token-collector wrap -- claude ARGS...`, and runs interactive sessions as
//! they are (`command claude ARGS...`): they need the terminal to themselves, and their
//! transcripts are read anyway.
//!
//! Use: `eval "$(token-collector shell-init bash)"` in ~/.bashrc, the same with `zsh` in
//! ~/.zshrc, `token-collector shell-init fish | source` in ~/.config/fish/config.fish.
//!
//! The function names this binary by its absolute path (no PATH lookup at each run) and falls
//! back to plain `claude` when that file is no longer executable. `wrap` runs `claude` from
//! PATH itself: a child process never sees the shell function, so it cannot call itself.

use std::ffi::OsString;
use std::process::ExitCode;

/// The shells `shell-init` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl Shell {
    pub fn parse(name: &str) -> Option<Shell> {
        match name {
            "bash" => Some(Shell::Bash),
            "zsh" => Some(Shell::Zsh),
            "fish" => Some(Shell::Fish),
            _ => None,
        }
    }
}

const USAGE: &str = "usage: token-collector shell-init bash|zsh|fish";

/// `token-collector shell-init SHELL`; `args` are the arguments after `shell-init`.
pub fn main(args: &[OsString]) -> ExitCode {
    let names: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if names.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let shell = match names.as_slice() {
        [one] => Shell::parse(one),
        _ => None,
    };
    let Some(shell) = shell else {
        eprintln!("token-collector shell-init: name one shell\n{USAGE}");
        return ExitCode::from(2);
    };
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.to_str().map(str::to_string))
        .unwrap_or_else(|| "token-collector".to_string());
    print!("{}", script(shell, &exe));
    ExitCode::SUCCESS
}

/// The function for `shell`, calling `exe` (an absolute path, or a name found on PATH).
pub fn script(shell: Shell, exe: &str) -> String {
    match shell {
        Shell::Bash | Shell::Zsh => posix(shell, &sh_quote(exe)),
        Shell::Fish => fish(&fish_quote(exe)),
    }
}

/// `'...'` for bash and zsh: a `'` inside becomes `'\''`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `'...'` for fish: `\` and `'` are escaped with `\`.
fn fish_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', r"\\").replace('\'', r"\'"))
}

fn posix(shell: Shell, exe: &str) -> String {
    let name = if shell == Shell::Zsh { "zsh" } else { "bash" };
    format!(
        r#"# token-collector shell integration ({name}): non-interactive `claude` runs (-p/--print,
# or output not to a terminal) go through `token-collector wrap`, which passes their output
# and exit status through unchanged and records the token usage they print.
# Interactive sessions run untouched.
claude() {{
    local __tc_wrap=0 __tc_arg
    [ -t 1 ] || __tc_wrap=1
    for __tc_arg in "$@"; do
        case "$__tc_arg" in
            --) break ;;
            -p|--print) __tc_wrap=1 ;;
        esac
    done
    if [ "$__tc_wrap" = 1 ] && [ -x {exe} ]; then
        {exe} wrap -- claude "$@"
    else
        command claude "$@"
    fi
}}
"#
    )
}

fn fish(exe: &str) -> String {
    format!(
        r#"# token-collector shell integration (fish): non-interactive `claude` runs (-p/--print,
# or output not to a terminal) go through `token-collector wrap`, which passes their output
# and exit status through unchanged and records the token usage they print.
# Interactive sessions run untouched.
function claude --description 'claude; non-interactive runs recorded by token-collector'
    set -l __tc_wrap 0
    if not isatty stdout
        set __tc_wrap 1
    end
    for __tc_arg in $argv
        if test "$__tc_arg" = "--"
            break
        else if test "$__tc_arg" = "-p"; or test "$__tc_arg" = "--print"
            set __tc_wrap 1
        end
    end
    if test $__tc_wrap = 1; and test -x {exe}
        {exe} wrap -- claude $argv
    else
        command claude $argv
    end
end
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("/a b/it's"), r"'/a b/it'\''s'");
        assert_eq!(fish_quote(r"/a\b/it's"), r"'/a\\b/it\'s'");
        assert!(script(Shell::Bash, "/x/token-collector")
            .contains("'/x/token-collector' wrap -- claude \"$@\""));
        assert!(script(Shell::Fish, "/x/token-collector")
            .contains("'/x/token-collector' wrap -- claude $argv"));
        assert_eq!(Shell::parse("csh"), None);
    }
}
