//! Black-box HTTP tests against the real Slate (in-process, port 0, fresh database each),
//! and against the built `slate` binary for what only a process can show.

mod access;
mod binary;
mod database;
mod library;
mod limits;
mod operations;
mod sign_in;
mod tokens_and_roles;
mod uploads;
