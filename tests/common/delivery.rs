//! What a subscriber saw, and whether every one of them got the message:
//! shared by the broker's and the websocket relay's tests and examples.

use stampede::Timestamp;

/// What one subscriber saw: the message (`None`: the stream ended without
/// one) and when it read it.
pub type Received = Option<(String, Timestamp)>;

/// `Ok` when every subscriber returned `message`; else the failure, naming
/// the subscribers (by child index) that did not get it.
pub fn check_delivery(
    outcomes: &stampede::Outcomes<Received>,
    message: &str,
) -> Result<(), String> {
    let missed: Vec<String> = outcomes
        .iter()
        .filter(|o| !matches!(o.value(), Some(Some((m, _))) if m == message))
        .map(|o| o.index().to_string())
        .collect();
    if missed.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} of {} subscribers did not receive {message:?}: subscribers {}\n{outcomes}",
        missed.len(),
        outcomes.len(),
        missed.join(", ")
    ))
}
