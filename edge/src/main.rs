//! `edge`: the binary that composes every tier of an edge node.
fn main() {}
