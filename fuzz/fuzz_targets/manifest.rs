//! Manifest bodies and Content-Types from arbitrary bytes: parsed or refused,
//! never a panic.
#![no_main]

use berth::oci::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (Option<&str>, &[u8])| {
    let (content_type, body) = input;
    let _ = Manifest::parse(content_type, body);
});
