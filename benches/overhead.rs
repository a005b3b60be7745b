fn main() { stampede::init(); }
