pub mod address;
pub mod signature;
