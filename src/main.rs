fn main() {
    println!("rgsd {}", env!("CARGO_PKG_VERSION"));
}
