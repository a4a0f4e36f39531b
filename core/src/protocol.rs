//! Framed messages between host and device (issue 5).
