//! The NVML entry points `nvml-wrapper` does not wrap (or wraps in a way that does not fit a
//! long-lived backend, like its borrowing `EventSet`), called through the symbol table it
//! loaded. Each returns the same `NvmlError` the wrapper would: a missing symbol is
//! `FailedToLoadSymbol`, a return code is mapped by `nvml_try`.

use std::mem;

use nvml_wrapper::error::{nvml_sym, nvml_try, NvmlError};
use nvml_wrapper::{Device, Nvml};
use nvml_wrapper_sys::bindings::{
    nvmlEventData_t, nvmlEventSet_t, nvmlMarginTemperature_t, nvmlMemory_t,
    nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_SIZE, nvmlReturn_enum_NVML_ERROR_TIMEOUT,
};

/// `nvmlEventTypeXidCriticalError`.
pub const EVENT_XID_CRITICAL: u64 = 8;
/// `NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS`.
pub const CAUSE_MULTIPLE_SINGLE_BIT: u32 = 0;
/// `NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR`.
pub const CAUSE_DOUBLE_BIT: u32 = 1;

/// Framebuffer memory in bytes; `reserved` only from the v2 call.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub total: u64,
    pub reserved: Option<u64>,
    pub used: u64,
    pub free: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct RemappedRows {
    pub correctable: u32,
    pub uncorrectable: u32,
    pub pending: bool,
    pub failure: bool,
}

/// `NVML_STRUCT_VERSION(name, v)`: the struct size with the version in the top byte.
fn struct_version<T>(v: u32) -> u32 {
    mem::size_of::<T>() as u32 | (v << 24)
}

/// `nvmlDeviceGetMarginTemperature`: degrees left before thermal slowdown.
pub fn margin_temperature(nvml: &Nvml, dev: &Device<'_>) -> Result<i32, NvmlError> {
    let sym = nvml_sym(nvml.lib().nvmlDeviceGetMarginTemperature.as_ref())?;
    // SAFETY: plain C struct of integers; zero is a valid value.
    let mut info: nvmlMarginTemperature_t = unsafe { mem::zeroed() };
    info.version = struct_version::<nvmlMarginTemperature_t>(1);
    // SAFETY: a live device handle of this library and a valid out pointer.
    nvml_try(unsafe { sym(dev.handle(), &mut info) })?;
    Ok(info.marginTemperature)
}

/// `nvmlDeviceGetJpgUtilization`: percent.
pub fn jpg_utilization(nvml: &Nvml, dev: &Device<'_>) -> Result<u32, NvmlError> {
    let sym = nvml_sym(nvml.lib().nvmlDeviceGetJpgUtilization.as_ref())?;
    let (mut util, mut period) = (0u32, 0u32);
    // SAFETY: a live device handle and valid out pointers.
    nvml_try(unsafe { sym(dev.handle(), &mut util, &mut period) })?;
    Ok(util)
}

/// `nvmlDeviceGetOfaUtilization`: percent.
pub fn ofa_utilization(nvml: &Nvml, dev: &Device<'_>) -> Result<u32, NvmlError> {
    let sym = nvml_sym(nvml.lib().nvmlDeviceGetOfaUtilization.as_ref())?;
    let (mut util, mut period) = (0u32, 0u32);
    // SAFETY: a live device handle and valid out pointers.
    nvml_try(unsafe { sym(dev.handle(), &mut util, &mut period) })?;
    Ok(util)
}

/// The number of pages retired for `cause` (`nvmlDeviceGetRetiredPages` with a size query).
pub fn retired_page_count(nvml: &Nvml, dev: &Device<'_>, cause: u32) -> Result<u32, NvmlError> {
    let sym = nvml_sym(nvml.lib().nvmlDeviceGetRetiredPages.as_ref())?;
    let mut count = 0u32;
    // SAFETY: a count of 0 with a null buffer asks only for the count.
    let r = unsafe { sym(dev.handle(), cause, &mut count, std::ptr::null_mut()) };
    if r != nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_SIZE {
        nvml_try(r)?;
    }
    Ok(count)
}

/// `nvmlDeviceGetRemappedRows`.
pub fn remapped_rows(nvml: &Nvml, dev: &Device<'_>) -> Result<RemappedRows, NvmlError> {
    let sym = nvml_sym(nvml.lib().nvmlDeviceGetRemappedRows.as_ref())?;
    let (mut corr, mut unc, mut pending, mut failure) = (0u32, 0u32, 0u32, 0u32);
    // SAFETY: a live device handle and valid out pointers.
    nvml_try(unsafe {
        sym(
            dev.handle(),
            &mut corr,
            &mut unc,
            &mut pending,
            &mut failure,
        )
    })?;
    Ok(RemappedRows {
        correctable: corr,
        uncorrectable: unc,
        pending: pending != 0,
        failure: failure != 0,
    })
}

/// `nvmlDeviceGetMemoryInfo` (v1: no reserved amount), for libraries without the v2 call.
pub fn memory_v1(nvml: &Nvml, dev: &Device<'_>) -> Result<Memory, NvmlError> {
    let sym = nvml_sym(nvml.lib().nvmlDeviceGetMemoryInfo.as_ref())?;
    // SAFETY: plain C struct of integers.
    let mut m: nvmlMemory_t = unsafe { mem::zeroed() };
    // SAFETY: a live device handle and a valid out pointer.
    nvml_try(unsafe { sym(dev.handle(), &mut m) })?;
    Ok(Memory {
        total: m.total,
        reserved: None,
        used: m.used,
        free: m.free,
    })
}

/// `nvmlDeviceGetGpuInstanceId` of a MIG device handle.
pub fn gpu_instance_id(nvml: &Nvml, dev: &Device<'_>) -> Result<u32, NvmlError> {
    let sym = nvml_sym(nvml.lib().nvmlDeviceGetGpuInstanceId.as_ref())?;
    let mut id = 0u32;
    // SAFETY: a live device handle and a valid out pointer.
    nvml_try(unsafe { sym(dev.handle(), &mut id) })?;
    Ok(id)
}

/// `nvmlDeviceGetComputeInstanceId` of a MIG device handle.
pub fn compute_instance_id(nvml: &Nvml, dev: &Device<'_>) -> Result<u32, NvmlError> {
    let sym = nvml_sym(nvml.lib().nvmlDeviceGetComputeInstanceId.as_ref())?;
    let mut id = 0u32;
    // SAFETY: a live device handle and a valid out pointer.
    nvml_try(unsafe { sym(dev.handle(), &mut id) })?;
    Ok(id)
}

/// An NVML event set, owned by the backend (freed with [`event_set_free`] before `nvmlShutdown`).
pub struct EventSet(nvmlEventSet_t);

// SAFETY: an event set is an opaque handle that NVML lets any thread use; the backend only
// touches it under its state mutex.
unsafe impl Send for EventSet {}

/// One event taken from the set.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    /// The device handle's address, as [`register_xid`] returned it.
    pub device: usize,
    pub event_type: u64,
    /// For XID events: the XID code.
    pub data: u64,
}

pub fn event_set_create(nvml: &Nvml) -> Result<EventSet, NvmlError> {
    let sym = nvml_sym(nvml.lib().nvmlEventSetCreate.as_ref())?;
    let mut set: nvmlEventSet_t = std::ptr::null_mut();
    // SAFETY: a valid out pointer.
    nvml_try(unsafe { sym(&mut set) })?;
    Ok(EventSet(set))
}

pub fn event_set_free(nvml: &Nvml, set: EventSet) -> Result<(), NvmlError> {
    let sym = nvml_sym(nvml.lib().nvmlEventSetFree.as_ref())?;
    // SAFETY: a set created by this library and not freed before (the value is consumed).
    nvml_try(unsafe { sym(set.0) })
}

/// Register `dev` for critical XID events on `set`; `NotSupported` when the device cannot
/// report them. Returns the device handle's address (events name their device by it).
pub fn register_xid(nvml: &Nvml, dev: &Device<'_>, set: &EventSet) -> Result<usize, NvmlError> {
    let supported = nvml_sym(nvml.lib().nvmlDeviceGetSupportedEventTypes.as_ref())?;
    let register = nvml_sym(nvml.lib().nvmlDeviceRegisterEvents.as_ref())?;
    let mut types = 0u64;
    // SAFETY: a live device handle and a valid out pointer.
    nvml_try(unsafe { supported(dev.handle(), &mut types) })?;
    if types & EVENT_XID_CRITICAL == 0 {
        return Err(NvmlError::NotSupported);
    }
    // SAFETY: a live device handle and a live set of the same library.
    nvml_try(unsafe { register(dev.handle(), EVENT_XID_CRITICAL, set.0) })?;
    // SAFETY: reading the handle value only.
    Ok(unsafe { dev.handle() } as usize)
}

/// Take one pending event without waiting: `Ok(None)` when there is none.
pub fn event_wait(nvml: &Nvml, set: &EventSet) -> Result<Option<Event>, NvmlError> {
    let sym = nvml_sym(nvml.lib().nvmlEventSetWait_v2.as_ref())?;
    // SAFETY: plain C struct; a null device pointer is a valid value.
    let mut data: nvmlEventData_t = unsafe { mem::zeroed() };
    // SAFETY: a live set and a valid out pointer; 0 ms never blocks.
    let r = unsafe { sym(set.0, &mut data, 0) };
    if r == nvmlReturn_enum_NVML_ERROR_TIMEOUT {
        return Ok(None);
    }
    nvml_try(r)?;
    Ok(Some(Event {
        device: data.device as usize,
        event_type: data.eventType,
        data: data.eventData,
    }))
}
