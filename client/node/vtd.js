'use strict';
/**
 * A vtd client for Node.js with no dependencies, for a SillyTavern server
 * plugin or any other Node program that keeps values in vtd.
 *
 * Copy this one file next to your code (Node 18 or newer):
 *
 *     const { VtdClient } = require('./vtd.js');
 *     const vtd = new VtdClient();          // finds the socket as vtd does
 *     const tracker = vtd.extension('tracker');
 *     await tracker.call('register');
 *     await tracker.call('data.set', { id: 'chat-1', key: 'hp', value: '123' });
 *     vtd.close();
 *
 * Calls share one connection and may run concurrently. The connection opens
 * on the first call and reopens on the next call after it dropped (vtd
 * restarted, say). While no call is waiting, it does not keep Node running,
 * so a script that forgets close() still exits. A call in flight when it drops fails with
 * VtdConnectionError and is never resent: it may or may not have been
 * applied. Every write vtd answers with success is already on disk.
 *
 * JSON.parse reads integers beyond 2**53 inexactly; vtd stores and returns
 * them exactly, so keep such numbers in strings if they must survive Node.
 */

const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

/** The codes of the errors vtd answers with (docs/protocol.md, "Errors"). */
const Codes = Object.freeze({
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  NOT_REGISTERED: -32001,
  NOT_FOUND: -32002,
  BUSY: -32003,
  STORAGE_UNAVAILABLE: -32004,
});

const START_HINT =
  'Is the daemon running? Start it with `vtd` (or `systemctl --user start vtd.socket`), ' +
  'or point the client at its socket (the socket option or VTD_SOCKET).';
const DENIED_HINT =
  "The socket's mode keeps this user out: connect as the daemon's user, or let a " +
  'group in (vtd --socket-mode 0660, or SocketGroup= in a drop-in for vtd.socket).';

/** The root of every error this client throws. */
class VtdError extends Error {
  constructor(message) {
    super(message);
    this.name = this.constructor.name;
  }
}

/** vtd cannot be reached, or the connection dropped before vtd answered. */
class VtdConnectionError extends VtdError {}

/** vtd did not answer a call within the client's timeout. */
class VtdTimeoutError extends VtdError {}

/**
 * vtd answered a call with an error: `code` is one of `Codes`, `data` says
 * which thing is at fault (`data.field` for invalid params, `data.kind` and
 * `data.id` for something not found).
 */
class VtdRpcError extends VtdError {
  constructor(code, message, data) {
    super(message);
    this.code = code;
    this.data = data === undefined ? {} : data;
  }
}

/**
 * The socket vtd listens on, found as the daemon finds it: `explicit`, else
 * VTD_SOCKET, else $XDG_RUNTIME_DIR/vtd/vtd.sock, else /tmp/vtd-$UID/vtd.sock.
 */
function socketPath(explicit, env = process.env) {
  if (explicit) return explicit;
  if (env.VTD_SOCKET) return env.VTD_SOCKET;
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'vtd', 'vtd.sock');
  return path.join(fallbackDir(), 'vtd.sock');
}

function fallbackDir() {
  return `/tmp/vtd-${process.getuid()}`;
}

/** Refuse a /tmp fallback dir that another user made (and could listen in). */
function refuseForeignFallback(socket) {
  if (path.dirname(socket) !== fallbackDir()) return;
  let owner;
  try {
    owner = fs.statSync(fallbackDir()).uid;
  } catch {
    return; // nothing there: connecting fails on its own
  }
  if (owner !== process.getuid()) {
    throw new VtdConnectionError(
      `cannot connect to vtd at ${socket}: ${fallbackDir()} belongs to uid ${owner}, ` +
        'not to you; refusing to connect. Remove that directory if nobody you trust made it, ' +
        "or point the client at vtd's socket (the socket option or VTD_SOCKET).",
    );
  }
}

/** One connection to vtd, shared by every call made through it. */
class VtdClient {
  /**
   * @param {{socket?: string, timeoutMs?: number, maxMessage?: number}} [options]
   *   `socket` overrides the search for vtd's socket; `timeoutMs` bounds each
   *   call (default 30 s); `maxMessage` is vtd's --max-message (default 16 MiB).
   */
  constructor({ socket, timeoutMs = 30000, maxMessage = 16 * 1024 * 1024 } = {}) {
    this.socket = socketPath(socket);
    this.timeoutMs = timeoutMs;
    this.maxMessage = maxMessage;
    this._stream = null;
    this._opening = null;
    this._connecting = null;
    this._partial = [];
    this._nextId = 1;
    this._pending = new Map();
  }

  /**
   * Call `method` with named `params`; resolves to its result, or rejects
   * with a VtdRpcError carrying vtd's code and data.
   */
  async call(method, params = {}) {
    const id = this._nextId++;
    const line = JSON.stringify({ jsonrpc: '2.0', id, method, params });
    const size = Buffer.byteLength(line);
    if (size > this.maxMessage) {
      // vtd would answer -32600 and close the connection, failing every other
      // call on it: refuse here instead, as vtd would, and keep the connection.
      throw new VtdRpcError(
        Codes.INVALID_REQUEST,
        `Invalid request: the message is ${size} bytes, over vtd's limit of ${this.maxMessage}`,
        { reason: 'message too large' },
      );
    }
    const stream = await this._connected();
    if (this._stream !== stream) {
      throw new VtdConnectionError(`the connection to vtd at ${this.socket} dropped; ${method} was not sent`);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        this._unrefIfIdle();
        reject(new VtdTimeoutError(`vtd did not answer ${method} within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this._pending.set(id, { resolve, reject, timer });
      stream.ref();
      stream.write(line + '\n');
    });
  }

  /** Calls bound to one extension: `call(method, params)` adds its `extensionId`. */
  extension(extensionId) {
    return {
      extensionId,
      call: (method, params = {}) => this.call(method, { ...params, extensionId }),
    };
  }

  /** Close the connection (or the one being opened); calls in flight fail with VtdConnectionError. */
  close() {
    if (this._opening !== null) this._opening.destroy();
    if (this._stream !== null) {
      this._stream.destroy();
      this._dropped(this._stream, 'the client closed the connection');
    }
  }

  _connected() {
    if (this._stream !== null) return Promise.resolve(this._stream);
    if (this._connecting === null) {
      this._connecting = this._open().finally(() => {
        this._connecting = null;
      });
    }
    return this._connecting;
  }

  _open() {
    refuseForeignFallback(this.socket);
    const stream = net.createConnection(this.socket);
    this._opening = stream;
    return new Promise((resolve, reject) => {
      stream.once('error', (error) => {
        const hint = error.code === 'EACCES' ? DENIED_HINT : START_HINT;
        reject(new VtdConnectionError(`cannot connect to vtd at ${this.socket}: ${error.message}. ${hint}`));
      });
      stream.once('close', () => {
        reject(new VtdConnectionError(`the client was closed while connecting to vtd at ${this.socket}`));
      });
      stream.once('connect', () => {
        stream.removeAllListeners('error');
        stream.removeAllListeners('close');
        stream.setEncoding('utf8');
        stream.on('data', (text) => this._received(text));
        stream.on('error', (error) => this._dropped(stream, error.message));
        stream.on('close', () => this._dropped(stream, 'vtd closed the connection'));
        this._stream = stream;
        this._partial = [];
        resolve(stream);
      });
    }).finally(() => {
      this._opening = null;
    });
  }

  _received(text) {
    // Only the new text is searched for a newline: a large answer arrives in
    // many pieces, and is joined once, when its newline comes.
    let start = 0;
    let newline;
    while ((newline = text.indexOf('\n', start)) !== -1) {
      this._partial.push(text.slice(start, newline));
      const line = this._partial.join('');
      this._partial = [];
      start = newline + 1;
      if (line.trim() === '') continue;
      let response;
      try {
        response = JSON.parse(line);
      } catch {
        const stream = this._stream;
        stream.destroy();
        this._dropped(stream, 'vtd sent a line that is not JSON');
        return;
      }
      this._answered(response);
    }
    if (start < text.length) this._partial.push(text.slice(start));
  }

  _answered(response) {
    if (response.id === null && response.error) {
      // An answer to no call in particular (vtd refusing the connection, say):
      // it concerns every call on this connection.
      const error = rpcError(response.error);
      for (const id of [...this._pending.keys()]) this._settle(id, null, error);
      return;
    }
    this._settle(response.id, response.result, response.error ? rpcError(response.error) : null);
  }

  _settle(id, result, error) {
    const pending = this._pending.get(id);
    if (pending === undefined) return; // timed out already
    this._pending.delete(id);
    clearTimeout(pending.timer);
    this._unrefIfIdle();
    if (error !== null) pending.reject(error);
    else pending.resolve(result);
  }

  _unrefIfIdle() {
    // An idle connection is no reason for Node to stay up; a call refs it again.
    if (this._pending.size === 0 && this._stream !== null) this._stream.unref();
  }

  _dropped(stream, reason) {
    if (this._stream !== stream) return;
    this._stream = null;
    const error = new VtdConnectionError(
      `the connection to vtd at ${this.socket} dropped (${reason}) before vtd answered; ` +
        'the call was not resent and may or may not have been applied',
    );
    for (const id of [...this._pending.keys()]) this._settle(id, null, error);
  }
}

function rpcError({ code, message, data }) {
  return new VtdRpcError(code, message, data);
}

module.exports = {
  Codes,
  VtdClient,
  VtdConnectionError,
  VtdError,
  VtdRpcError,
  VtdTimeoutError,
  socketPath,
};
