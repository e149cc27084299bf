//! Finding devices by the names config uses: the host's device ids (on Linux, ALSA PCM names
//! such as `default`, `plughw:CARD=PCH,DEV=0`, or a PCM of the user's `asound.conf` that has a
//! `hint` section).

use std::fmt;

use rodio::cpal::traits::{DeviceTrait, HostTrait};
use rodio::cpal::Device;
use rodio::microphone::{available_inputs, Input};

use crate::config::DeviceChoice;

/// The devices of this machine, by the names config accepts.
#[derive(Debug)]
pub struct DeviceList {
    /// Output devices: (name, description).
    pub outputs: Vec<(String, String)>,
    /// Input devices: (name, description).
    pub inputs: Vec<(String, String)>,
}

impl fmt::Display for DeviceList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (title, key, devices) in [
            ("Output devices", "output", &self.outputs),
            ("Input devices", "input", &self.inputs),
        ] {
            writeln!(f, "{title} (for `{key} = \"NAME\"`):")?;
            if devices.is_empty() {
                writeln!(f, "  (none)")?;
            }
            let width = devices.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
            for (name, description) in devices {
                let description = description.lines().next().unwrap_or_default();
                writeln!(f, "  {name:width$}  {description}")?;
            }
        }
        writeln!(
            f,
            "`true`, or leaving the key out, uses the system's default device; `false`, none."
        )
    }
}

/// Lists the output and input devices.
pub fn list_devices() -> Result<DeviceList, String> {
    let host = rodio::cpal::default_host();
    let describe = |device: &Device| -> Option<(String, String)> {
        let name = device.id().ok()?.id().to_string();
        let description = device
            .description()
            .map(|d| d.name().to_string())
            .unwrap_or_default();
        Some((name, description))
    };
    let outputs = host
        .output_devices()
        .map_err(|e| format!("cannot list output devices: {e}"))?
        .filter_map(|d| describe(&d))
        .collect();
    let inputs = available_inputs()
        .map_err(|e| format!("cannot list input devices: {e}"))?
        .into_iter()
        .filter_map(|input| describe(&input.into_inner()))
        .collect();
    Ok(DeviceList { outputs, inputs })
}

fn id_of(device: &Device) -> Option<String> {
    Some(device.id().ok()?.id().to_string())
}

/// The output device `choice` names.
pub(super) fn find_output(choice: &DeviceChoice) -> Result<Device, String> {
    let host = rodio::cpal::default_host();
    match choice {
        DeviceChoice::Named(name) => host
            .output_devices()
            .map_err(|e| format!("cannot list output devices: {e}"))?
            .find(|d| id_of(d).as_deref() == Some(name))
            .ok_or_else(|| format!("no output device `{name}` (see `jingle-gateway devices`)")),
        DeviceChoice::Default | DeviceChoice::Off => host
            .default_output_device()
            .ok_or_else(|| "this machine has no default output device".to_string()),
    }
}

/// The input device `choice` names.
pub(super) fn find_input(choice: &DeviceChoice) -> Result<Input, String> {
    let inputs = available_inputs().map_err(|e| format!("cannot list input devices: {e}"))?;
    let wanted = match choice {
        DeviceChoice::Named(name) => name.clone(),
        DeviceChoice::Default | DeviceChoice::Off => match rodio::cpal::default_host()
            .default_input_device()
            .and_then(|d| id_of(&d))
        {
            Some(id) => id,
            None => return Err("this machine has no default input device".into()),
        },
    };
    inputs
        .into_iter()
        .find(|input| id_of(&input.clone().into_inner()).as_deref() == Some(&wanted))
        .ok_or_else(|| format!("no input device `{wanted}` (see `jingle-gateway devices`)"))
}
