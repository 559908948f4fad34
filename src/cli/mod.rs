//! The binary's commands: argument types and the glue between them and the library.
pub mod broker;
pub mod dash;
pub mod groups;
pub mod logging;
pub mod search;
pub mod topics;
pub mod up;
pub mod users;
