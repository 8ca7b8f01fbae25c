fn main() {
    let code = multitenant_cli::run(std::env::args_os(), &multitenant_cli::conn::process_env());
    std::process::exit(code);
}
