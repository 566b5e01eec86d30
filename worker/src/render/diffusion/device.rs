//! The device and dtype a diffusion model runs with: `cpu`, `cuda` or `cuda:N`, CUDA that cannot be
//! opened falling back to the CPU with one line saying why.

use candle_core::{DType, Device};

/// A device setting (`diffusion.device`, `reverie generate --device`): `cpu`, `cuda` or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRequest {
    Cpu,
    Cuda(usize),
}

impl DeviceRequest {
    pub fn parse(name: &str) -> Result<DeviceRequest, String> {
        match name {
            "cpu" => Ok(DeviceRequest::Cpu),
            "cuda" => Ok(DeviceRequest::Cuda(0)),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(ordinal)) => Ok(DeviceRequest::Cuda(ordinal)),
                _ => Err(format!("unknown device {other:?} (cpu, cuda or cuda:N)")),
            },
        }
    }
}

/// The device a process runs on, and when CUDA was asked for but cannot be had here, the one line
/// that says so (the caller logs or prints it once).
#[derive(Debug)]
pub struct ChosenDevice {
    pub device: Device,
    pub fallback: Option<String>,
}

/// Opens the device `name` asks for. CUDA that cannot be opened (no driver, no GPU, a build without
/// the cuda feature) falls back to the CPU with one line saying why, so one binary serves GPU and CPU
/// machines alike; only an unknown name is an error.
pub fn parse_device(name: &str) -> Result<ChosenDevice, String> {
    Ok(choose_device(DeviceRequest::parse(name)?, open_cuda))
}

/// The fallback decision, given how to try to open CUDA device `ordinal`.
pub fn choose_device(
    request: DeviceRequest,
    open_cuda: impl FnOnce(usize) -> Result<Device, String>,
) -> ChosenDevice {
    match request {
        DeviceRequest::Cpu => ChosenDevice {
            device: Device::Cpu,
            fallback: None,
        },
        DeviceRequest::Cuda(ordinal) => match open_cuda(ordinal) {
            Ok(device) => ChosenDevice {
                device,
                fallback: None,
            },
            Err(reason) => ChosenDevice {
                device: Device::Cpu,
                fallback: Some(format!("CUDA unavailable ({reason}): running on the CPU")),
            },
        },
    }
}

/// Opens CUDA device `ordinal`, or says why not.
#[cfg(feature = "cuda")]
pub fn open_cuda(ordinal: usize) -> Result<Device, String> {
    use candle_core::cuda::cudarc::driver::sys as driver;
    // cudarc loads libcuda with dlopen at first use (vendor/README.md) and panics when it is not
    // there, so look for it first: no driver is the common case on a CPU machine and gets a plain
    // reason instead of a panic message.
    // SAFETY: only tries to dlopen the driver library under cudarc's candidate names.
    if !unsafe { driver::is_culib_present() } {
        return Err("no NVIDIA driver: libcuda.so.1 not found".to_string());
    }
    // The driver is there; any other failure (no device, wrong ordinal, a missing cuBLAS or cuRAND
    // library, which cudarc also loads by panicking) is an error or a panic caught here.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(|| Device::new_cuda(ordinal));
    std::panic::set_hook(previous);
    match opened {
        Ok(Ok(device)) => Ok(device),
        Ok(Err(error)) => Err(format!("device cuda:{ordinal}: {error}")),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "CUDA initialisation panicked".to_string())),
    }
}

/// Opens CUDA device `ordinal`, or says why not.
#[cfg(not(feature = "cuda"))]
pub fn open_cuda(_ordinal: usize) -> Result<Device, String> {
    Err("this binary was built without the cuda feature".to_string())
}

/// `f32`, `f16` or `bf16`.
pub fn parse_dtype(name: &str) -> Result<DType, String> {
    match name {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        "bf16" => Ok(DType::BF16),
        other => Err(format!("unknown dtype {other:?} (f32, f16 or bf16)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse() {
        assert_eq!(DeviceRequest::parse("cpu"), Ok(DeviceRequest::Cpu));
        assert_eq!(DeviceRequest::parse("cuda"), Ok(DeviceRequest::Cuda(0)));
        assert_eq!(DeviceRequest::parse("cuda:3"), Ok(DeviceRequest::Cuda(3)));
        for bad in ["gpu", "cuda:", "cuda:x", "CPU"] {
            let error = DeviceRequest::parse(bad).unwrap_err();
            assert!(error.contains("cpu, cuda or cuda:N"), "{bad}: {error}");
        }
        assert!(parse_device("metal").is_err());
    }

    #[test]
    fn cuda_that_cannot_be_opened_falls_back_to_the_cpu_with_one_line() {
        let chosen = choose_device(DeviceRequest::Cuda(1), |ordinal| {
            assert_eq!(ordinal, 1);
            Err("no NVIDIA driver: libcuda.so.1 not found".to_string())
        });
        assert!(chosen.device.is_cpu());
        assert_eq!(
            chosen.fallback.as_deref(),
            Some("CUDA unavailable (no NVIDIA driver: libcuda.so.1 not found): running on the CPU")
        );
    }

    #[test]
    fn an_opened_device_or_the_cpu_asked_for_says_nothing() {
        let chosen = choose_device(DeviceRequest::Cuda(0), |_| Ok(Device::Cpu));
        assert!(chosen.fallback.is_none());
        let chosen = choose_device(DeviceRequest::Cpu, |_| panic!("CUDA is not tried for cpu"));
        assert!(chosen.device.is_cpu() && chosen.fallback.is_none());
    }

    /// On this machine (CI has no GPU) `cuda` ends on the CPU with the reason, whichever way the
    /// binary was built; with a GPU and the cuda feature it opens the GPU.
    #[test]
    fn cuda_on_this_machine_opens_or_falls_back() {
        let chosen = parse_device("cuda").expect("a known name");
        match &chosen.fallback {
            Some(line) => {
                assert!(chosen.device.is_cpu());
                assert!(line.starts_with("CUDA unavailable ("), "{line}");
                assert!(line.ends_with("): running on the CPU"), "{line}");
                assert!(!line.contains('\n'), "one line: {line}");
            }
            None => assert!(chosen.device.is_cuda()),
        }
    }
}
