pub mod address;
pub mod probe;
pub mod signature;
