//! Compile-time behaviour of the attributes: one file per diagnostic in `ui/`,
//! each with the expected compiler output, and pass tests for every signature
//! shape in `ui/pass/`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/*.rs");
    t.pass("ui/pass/*.rs");
}
