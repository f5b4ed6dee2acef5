//! Processes seen through `/proc`: descendants of a process, and whether one is alive.

/// How deep [`descendants`] follows child processes.
const MAX_DEPTH: usize = 4;

/// Live (not zombie) processes descended from `pid`, up to four generations, found by
/// reading the parent of every process in `/proc`. Empty when `/proc` cannot be read.
pub fn descendants(pid: u32) -> Vec<u32> {
    let table: Vec<(u32, u32, char)> = match std::fs::read_dir("/proc") {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|p| {
                let (ppid, state) = parent_and_state(p)?;
                Some((p, ppid, state))
            })
            .collect(),
        Err(_) => return Vec::new(),
    };
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    for _ in 0..MAX_DEPTH {
        let next: Vec<u32> = table
            .iter()
            .filter(|(_, ppid, _)| frontier.contains(ppid))
            .map(|(p, _, _)| *p)
            .collect();
        if next.is_empty() {
            break;
        }
        found.extend(
            table
                .iter()
                .filter(|(p, _, state)| next.contains(p) && *state != 'Z')
                .map(|(p, _, _)| *p),
        );
        frontier = next;
    }
    found
}

/// Whether process `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    matches!(parent_and_state(pid), Some((_, state)) if state != 'Z')
}

/// `(ppid, state)` from `/proc/PID/stat`: "PID (COMM) STATE PPID ...", where COMM may
/// contain spaces and parentheses, so fields are counted after the last `)`.
fn parent_and_state(pid: u32) -> Option<(u32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}
