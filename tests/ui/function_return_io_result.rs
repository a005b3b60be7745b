#[stampede::function]
fn read_config(path: std::path::PathBuf) -> std::io::Result<String> {
    std::fs::read_to_string(path)
}

fn main() {}
