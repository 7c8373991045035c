//! Child processes with captured output, bounded waits, and guards that stop them: the test
//! kit's ([`synack_testkit::process`]), under the path the tests have always used.

pub use synack_testkit::process::*;
