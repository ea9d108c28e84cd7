//! libxmlsec1 prints every verification failure to stderr itself: outside Gatehouse's
//! structured logs, and quoting attacker-chosen text (IDs, algorithm URIs). Gatehouse reports
//! each failure through `tracing` already, so xmlsec's own printing is switched off, once,
//! before the first signature is checked. The crate's one `unsafe` (kept so by tests/tidy.rs).
#![allow(unsafe_code)]

use std::ffi::c_int;
use std::sync::Once;

unsafe extern "C" {
    /// libxmlsec1, xmlsec/errors.h: sets the flag its default error callback reads.
    fn xmlSecErrorsDefaultCallbackEnableOutput(enabled: c_int);
}

pub(crate) fn silence_xmlsec() {
    static ONCE: Once = Once::new();
    // SAFETY: the call takes an int and stores it in a static of libxmlsec1 (linked through
    // samael); no pointer crosses, nothing is allocated. `Once` makes it the only write, and it
    // happens before this process verifies anything (`verify` calls this first).
    ONCE.call_once(|| unsafe { xmlSecErrorsDefaultCallbackEnableOutput(0) });
}
