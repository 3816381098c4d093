fn main() {
    // sqlx::migrate! embeds migrations/ at build time; a new file must trigger a rebuild.
    println!("cargo:rerun-if-changed=migrations");
}
