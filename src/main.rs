//! The `solobase` binary; everything happens in [`solobase::cli`].

fn main() -> std::process::ExitCode {
    solobase::cli::main()
}
