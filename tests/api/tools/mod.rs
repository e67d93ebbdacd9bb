//! The developer tools: generating, packaging, publishing and installing extensions.

mod packages;
mod scaffold;
