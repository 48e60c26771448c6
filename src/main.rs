use std::process::ExitCode;

fn main() -> ExitCode {
    lenet_jacobian::main(std::env::args_os())
}
