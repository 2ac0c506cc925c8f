//! `Range` and `Content-Range` values from arbitrary text: a satisfiable range
//! always lies inside the blob, and a chunk always has a length that fits.
#![no_main]

use berth::registry::headers::{RangeRequest, parse_content_range, parse_range};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, u64)| {
    let (value, size) = input;
    if let RangeRequest::Satisfiable(start, end) = parse_range(value, size) {
        assert!(start <= end && end < size);
    }
    if let Some((start, length)) = parse_content_range(value) {
        assert!(length >= 1 && start.checked_add(length - 1).is_some());
    }
});
