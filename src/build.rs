//! Build (issue 6).
