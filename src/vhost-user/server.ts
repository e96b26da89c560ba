/**
 * A listening vhost-user socket: accepts one front-end at a time and hands it to a
 * {@link VhostUserBackend}. When the front-end goes away the server keeps listening, and the next
 * connection starts a fresh session with the same device model (same disk). Connections that
 * arrive while a session runs wait in the listen backlog.
 */
import { VirtioError } from '../errors.js';
import { logger } from '../log.js';
import { POLL_READABLE, type PollHandle } from '../native/types.js';
import type { VhostUserBackend, VhostUserSession } from './backend.js';

const log = logger('vhost-user');

/** A vhost-user server socket. */
export class VhostUserServer {
  readonly path: string;
  readonly backend: VhostUserBackend;
  private readonly listenFd: number;
  private poll: PollHandle | undefined;
  private closed = false;
  private readonly sessionWaiters: Array<(s: VhostUserSession) => void> = [];

  private constructor(path: string, backend: VhostUserBackend, fd: number) {
    this.path = path;
    this.backend = backend;
    this.listenFd = fd;
    this.watch();
  }

  /** Listen on `path` (an existing socket file is replaced). */
  static listen(path: string, backend: VhostUserBackend): VhostUserServer {
    if (!backend.nat.available) throw new VirtioError('NATIVE_UNAVAILABLE', `vhost-user needs the native addon (${backend.nat.unavailableReason ?? 'not loaded'}); build it with \`npm rebuild\``);
    const fd = backend.nat.listenUnix(path);
    log('listening on %s', path);
    return new VhostUserServer(path, backend, fd);
  }

  /** Resolves with the next session that starts. */
  nextSession(): Promise<VhostUserSession> {
    return new Promise((r) => this.sessionWaiters.push(r));
  }

  private watch(): void {
    if (this.closed || this.poll !== undefined) return;
    this.poll = this.backend.nat.poll(this.listenFd, POLL_READABLE, () => this.onAcceptable());
  }

  private onAcceptable(): void {
    if (this.closed || this.backend.session !== null) return;
    let fd: number;
    try {
      fd = this.backend.nat.accept(this.listenFd);
    } catch (e) {
      log('accept failed: %O', e);
      return;
    }
    if (fd < 0) return;
    // One front-end at a time: stop accepting until this session ends.
    this.poll?.stop();
    this.poll = undefined;
    const s = this.backend.serve(fd);
    for (const w of this.sessionWaiters.splice(0)) w(s);
    void s.done.then(() => this.watch());
  }

  /** Stop listening, end the current session, wait for its cleanup. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.poll?.stop();
    this.poll = undefined;
    try {
      this.backend.nat.close(this.listenFd);
    } catch {
      // already closed
    }
    const s = this.backend.session;
    if (s !== null) {
      s.close();
      await s.done;
    }
  }
}
