use std::process::ExitCode;

fn main() -> ExitCode {
    lenet_jacobian::main_with_args(std::env::args_os())
}
