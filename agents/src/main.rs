fn main() -> anyhow::Result<()> {
    anyhow::bail!("rill-agent is not built yet")
}
