#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| jingle_gateway::fuzzing::stanza_reader(data));
