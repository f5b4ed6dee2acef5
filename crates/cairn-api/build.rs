//! Rebuild when a console asset is added or removed: `include_dir!` tracks the files it
//! embedded, not new ones.
fn main() {
    println!("cargo:rerun-if-changed=console");
}
