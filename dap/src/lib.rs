//! spindle-dap: the debug adapter for Lua stages.
//!
//! It will speak the Debug Adapter Protocol over the scripting crate's
//! debugger core and the kernel's in-flight requests. Today the crate holds
//! no protocol code yet; it exists so that the workspace layering
//! (`dap` on `kernel` and `scripting`) is fixed and checked from the start.

pub use spindle_kernel as kernel;
pub use spindle_scripting as scripting;
