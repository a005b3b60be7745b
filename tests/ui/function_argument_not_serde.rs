struct Ticket {
    id: u32,
}

#[stampede::function]
fn claim(ticket: Ticket, worker: u32) -> bool {
    ticket.id == worker
}

fn main() {}
