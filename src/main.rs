use std::process::ExitCode;

fn main() -> ExitCode {
    let executors = medrun::stage::Executors::builtin();
    ExitCode::from(medrun::cli::main_with(std::env::args_os(), &executors))
}
