#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| jingle_gateway::fuzzing::part_recovery_wav(data));
