/**
 * A progress bar on stderr while a run goes (TTY only); phases and warnings print as lines above it.
 * Without a TTY only the phase and warning lines are written.
 */
export class Progress {
  private readonly stream: NodeJS.WriteStream
  private readonly tty: boolean
  private readonly started = Date.now()
  private bar = ''

  constructor (stream: NodeJS.WriteStream = process.stderr) {
    this.stream = stream
    this.tty = stream.isTTY === true
  }

  private clear (): void {
    if (this.tty && this.bar !== '') this.stream.write('\r\x1b[K')
  }

  private redraw (): void {
    if (this.tty && this.bar !== '') this.stream.write(this.bar)
  }

  line (text: string): void {
    this.clear()
    this.stream.write(`${text}\n`)
    this.redraw()
  }

  update (label: string, done: number, total: number, detail = ''): void {
    if (!this.tty) return
    const width = 24
    const filled = total > 0 ? Math.round((done / total) * width) : 0
    const elapsed = Math.round((Date.now() - this.started) / 1000)
    const clock = `${Math.floor(elapsed / 60)}:${String(elapsed % 60).padStart(2, '0')}`
    const columns = this.stream.columns ?? 100
    this.clear()
    this.bar = `  ${label.padEnd(9)} [${'█'.repeat(filled)}${'░'.repeat(width - filled)}] ${done}/${total}  ${clock}  ${detail}`.slice(0, columns - 1)
    this.redraw()
  }

  end (): void {
    this.clear()
    this.bar = ''
  }
}
