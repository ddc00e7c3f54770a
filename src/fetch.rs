//! Fetch (issue 6).
