//! `solobase-devtools`: see the library's documentation.

fn main() -> std::process::ExitCode {
    solobase_devtools::cli::main()
}
