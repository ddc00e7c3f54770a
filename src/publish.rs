//! Publish: write a pacman repository (db + files, signatures, atomic swap).
