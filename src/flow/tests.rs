//! Flow unit tests (filled below).
