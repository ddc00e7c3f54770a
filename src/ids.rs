//! Shared typed ids (`TreeId`, `DepHash`, `PkgId`, `Blake3`). Imports no stage.
