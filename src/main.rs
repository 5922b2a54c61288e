fn main() {
    println!("retort {}", env!("CARGO_PKG_VERSION"));
}
