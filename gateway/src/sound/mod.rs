//! This machine's speaker and microphone, bridged to calls (`kind = "sound-device"`).
//!
//! Each sound endpoint in use has one thread that owns its audio streams (they cannot move
//! between threads). Calls reach it through a [`CallLink`]: two bounded queues of 48 kHz mono
//! samples, one each way, with the clock drift between call and device absorbed by
//! [`drift::DriftResampler`]. The device is opened by the first call and closed after the last.

mod device;
mod devices;
pub mod drift;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

pub use devices::{list_devices, DeviceList};

use crate::config::{SoundDeviceConfig, WhenBusy};
use drift::SampleQueue;

/// Queue target for the caller's audio on its way to the speaker (80 ms: more than one period
/// of the device, which pulls audio 50 ms at a time).
const PLAYBACK_TARGET: usize = 3840;
/// Queue target for captured audio on its way to the caller (60 ms: the call takes 20 ms at a
/// time, the device gives one period at a time).
const CAPTURE_TARGET: usize = 2880;

/// One call's connection to a sound device.
#[derive(Debug)]
pub struct CallLink {
    /// The caller's audio, to be played.
    pub to_device: Mutex<SampleQueue>,
    /// Captured audio, to be sent to the caller.
    pub from_device: Mutex<SampleQueue>,
    /// Written once, read every frame: no lock.
    failure: OnceLock<String>,
    ended: AtomicBool,
}

impl CallLink {
    fn new() -> Self {
        Self {
            to_device: Mutex::new(SampleQueue::new(PLAYBACK_TARGET)),
            from_device: Mutex::new(SampleQueue::new(CAPTURE_TARGET)),
            failure: OnceLock::new(),
            ended: AtomicBool::new(false),
        }
    }

    /// Why the device failed this call (could not be opened, or stopped), if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    /// The call is over: the device lets go of it.
    pub fn end(&self) {
        self.ended.store(true, Ordering::Release);
    }

    fn has_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    fn fail(&self, why: &str) {
        let _ = self.failure.set(why.to_string());
    }
}

/// Why a call cannot use a sound device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachError {
    /// The device is in use and its endpoint refuses a second caller.
    Busy,
}

/// The sound endpoints in use, by endpoint name (one process-wide registry: the devices are the
/// machine's).
#[derive(Default)]
pub struct SoundDevices {
    in_use: Mutex<HashMap<String, Arc<device::DeviceState>>>,
}

impl SoundDevices {
    /// The registry of this process.
    pub fn global() -> &'static Self {
        static DEVICES: OnceLock<SoundDevices> = OnceLock::new();
        DEVICES.get_or_init(Self::default)
    }

    /// Connects a call to the devices of endpoint `endpoint`, opening them on their own thread
    /// if no call uses them yet. Opening happens on that thread: a device that cannot be opened
    /// shows as the link's [`CallLink::failure`].
    pub fn attach(
        &'static self,
        endpoint: &str,
        config: &SoundDeviceConfig,
    ) -> Result<Arc<CallLink>, AttachError> {
        let mut in_use = lock(&self.in_use);
        let link = Arc::new(CallLink::new());
        if let Some(state) = in_use.get(endpoint) {
            let mut calls = lock(&state.calls);
            calls.retain(|call| !call.has_ended());
            if !calls.is_empty() && state.config.when_busy == WhenBusy::Busy {
                return Err(AttachError::Busy);
            }
            calls.push(link.clone());
            return Ok(link);
        }
        let state = Arc::new(device::DeviceState::new(
            endpoint.to_string(),
            config.clone(),
            link.clone(),
        ));
        in_use.insert(endpoint.to_string(), state.clone());
        drop(in_use);
        let spawned = std::thread::Builder::new()
            .name(format!("sound-{endpoint}"))
            .spawn(move || device::run(state, self));
        if let Err(e) = spawned {
            self.fail_all(endpoint, &format!("cannot start the sound thread: {e}"));
        }
        Ok(link)
    }

    /// Forgets endpoint `endpoint` if no call uses it any more; true if it was forgotten (the
    /// device thread then stops).
    fn release_if_idle(&self, endpoint: &str) -> bool {
        let mut in_use = lock(&self.in_use);
        let idle = in_use.get(endpoint).is_none_or(|state| {
            let mut calls = lock(&state.calls);
            calls.retain(|call| !call.has_ended());
            calls.is_empty()
        });
        if idle {
            in_use.remove(endpoint);
        }
        idle
    }

    /// Ends the use of endpoint `endpoint` (its device failed): every call attached is told
    /// `why`, under the registry's lock so no call joins the failed device meanwhile.
    fn fail_all(&self, endpoint: &str, why: &str) {
        let mut in_use = lock(&self.in_use);
        if let Some(state) = in_use.remove(endpoint) {
            for call in lock(&state.calls).iter() {
                call.fail(why);
            }
        }
    }
}

/// Locks `mutex`, carrying on after a panic elsewhere (the data are plain samples).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
