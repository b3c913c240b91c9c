'use strict';
/**
 * A SillyTavern server plugin that serves the old valuetracker plugin's REST
 * API from vtd, so that browser extensions written for it keep working
 * unchanged: same routes under /api/plugins/valuetracker, same
 * `x-extension-id` header, same JSON shapes, same statuses. Each request
 * becomes one vtd call (docs/migrating.md has the table).
 *
 * Install: copy this folder (index.js and vtd.js) to SillyTavern's
 * `plugins/valuetracker`, set `enableServerPlugins: true`, and run vtd as
 * the user SillyTavern runs as (or set VTD_SOCKET for SillyTavern).
 */

const { Codes, VtdClient, VtdRpcError, VtdConnectionError, VtdTimeoutError } = require('./vtd.js');

const info = {
  id: 'valuetracker',
  name: 'Value Tracker (vtd)',
  description: "The valuetracker plugin's REST API, stored by the vtd daemon.",
};

const HEADER = 'x-extension-id';

/** The HTTP status the old plugin answered for each of vtd's error codes. */
const STATUS = new Map([
  [Codes.PARSE_ERROR, 400],
  [Codes.INVALID_REQUEST, 400],
  [Codes.INVALID_PARAMS, 400],
  [Codes.METHOD_NOT_FOUND, 404],
  [Codes.NOT_REGISTERED, 404],
  [Codes.NOT_FOUND, 404],
  [Codes.BUSY, 503],
  [Codes.STORAGE_UNAVAILABLE, 500],
  [Codes.INTERNAL_ERROR, 500],
]);

/**
 * Each route: [HTTP method, path, vtd method, the params from the request].
 * `ext` is the `x-extension-id` header; `p` the path's params, `q` the
 * query, `b` the JSON body's fields, `body` the body itself (the data of an
 * override or merge). Only the fields a method takes are passed on.
 */
const ROUTES = [
  ['post', '/register', 'register', ({ ext }) => ({ extensionId: ext })],
  ['delete', '/register', 'deregister', ({ ext }) => ({ extensionId: ext })],
  ['get', '/characters', 'characters.list', ({ ext }) => ({ extensionId: ext })],
  ['get', '/characters/:id', 'characters.get', ({ ext, p }) => ({ extensionId: ext, id: p.id })],
  ['post', '/characters', 'characters.upsert', ({ ext, b }) => ({ extensionId: ext, id: b.id, name: b.name })],
  ['delete', '/characters/:id', 'characters.delete', ({ ext, p }) => ({ extensionId: ext, id: p.id })],
  ['get', '/instances', 'instances.list', ({ ext, q }) => ({ extensionId: ext, characterId: q.characterId })],
  ['get', '/characters/:characterId/instances', 'instances.list', ({ ext, p }) => ({ extensionId: ext, characterId: p.characterId })],
  ['delete', '/characters/:characterId/instances', 'instances.deleteAll', ({ ext, p }) => ({ extensionId: ext, characterId: p.characterId })],
  ['get', '/instances/:id', 'instances.get', ({ ext, p }) => ({ extensionId: ext, id: p.id })],
  ['post', '/instances', 'instances.upsert', ({ ext, b }) => ({ extensionId: ext, id: b.id, characterId: b.characterId, name: b.name })],
  ['delete', '/instances/:id', 'instances.delete', ({ ext, p }) => ({ extensionId: ext, id: p.id })],
  ['get', '/instances/:id/data', 'data.get', ({ ext, p }) => ({ extensionId: ext, id: p.id })],
  ['post', '/instances/:id/data', 'data.set', ({ ext, p, b }) => ({ extensionId: ext, id: p.id, key: b.key, value: b.value })],
  ['put', '/instances/:id/data', 'data.set', ({ ext, p, b }) => ({ extensionId: ext, id: p.id, key: b.key, value: b.value })],
  ['delete', '/instances/:id/data', 'data.clear', ({ ext, p }) => ({ extensionId: ext, id: p.id })],
  ['put', '/instances/:id/data/override', 'data.override', ({ ext, p, body }) => ({ extensionId: ext, id: p.id, data: body })],
  ['put', '/instances/:id/data/merge', 'data.merge', ({ ext, p, body }) => ({ extensionId: ext, id: p.id, data: body })],
  ['put', '/instances/:id/data/remove', 'data.remove', ({ ext, p, b }) => ({ extensionId: ext, id: p.id, keys: b.keys })],
  ['get', '/instances/:id/data/:key', 'data.getKey', ({ ext, p }) => ({ extensionId: ext, id: p.id, key: p.key })],
  ['delete', '/instances/:id/data/:key', 'data.deleteKey', ({ ext, p }) => ({ extensionId: ext, id: p.id, key: p.key })],
  ['get', '/cross-extension/characters/:extensionId', 'cross.characters.list', ({ p }) => ({ extensionId: p.extensionId })],
  ['get', '/cross-extension/characters/:extensionId/:id', 'cross.characters.get', ({ p }) => ({ extensionId: p.extensionId, id: p.id })],
  ['get', '/cross-extension/characters/:extensionId/:characterId/instances', 'cross.instances.list', ({ p }) => ({ extensionId: p.extensionId, characterId: p.characterId })],
  ['get', '/cross-extension/instances/:extensionId/:id', 'cross.instances.get', ({ p }) => ({ extensionId: p.extensionId, id: p.id })],
  ['get', '/cross-extension/instances/:extensionId/:id/data', 'cross.data.get', ({ p }) => ({ extensionId: p.extensionId, id: p.id })],
  ['get', '/cross-extension/instances/:extensionId/:id/data/:key', 'cross.data.getKey', ({ p }) => ({ extensionId: p.extensionId, id: p.id, key: p.key })],
  ['post', '/ping', 'ping', ({ b }) => ({ message: b.message })],
  ['get', '/probe', 'probe', () => ({})],
];

/** Routes that need no `x-extension-id` header. */
const WITHOUT_HEADER = new Set(['ping', 'probe']);

let vtd = null;

/** Register every route on SillyTavern's router for this plugin. */
async function init(router) {
  vtd = new VtdClient();
  for (const [verb, path, method, paramsOf] of ROUTES) {
    router[verb](path, (req, res) => {
      answer(req, res, method, paramsOf).catch((error) => {
        console.error(`[valuetracker] ${method} failed:`, error);
        if (!res.headersSent) res.status(500).json({ error: 'internal error; see the server log' });
      });
    });
  }
}

/** Close the connection to vtd when SillyTavern stops. */
async function exit() {
  if (vtd !== null) vtd.close();
  vtd = null;
}

async function answer(req, res, method, paramsOf) {
  const ext = req.get(HEADER);
  if (!ext && !method.startsWith('cross.') && !WITHOUT_HEADER.has(method)) {
    res.status(400).json({ error: `Extension ID is required in header: ${HEADER}` });
    return;
  }
  let body;
  try {
    body = await jsonBody(req);
  } catch {
    res.status(400).json({ error: 'the request body is not valid JSON' });
    return;
  }
  const b = body !== null && typeof body === 'object' ? body : {};
  const params = dropUndefined(paramsOf({ ext, p: req.params, q: req.query, b, body }));
  try {
    res.json(await vtd.call(method, params));
  } catch (error) {
    if (error instanceof VtdRpcError) {
      res.status(STATUS.get(error.code) ?? 500).json({ error: restMessage(error), code: error.code, data: error.data });
    } else if (error instanceof VtdConnectionError || error instanceof VtdTimeoutError) {
      res.status(503).json({ error: error.message });
    } else {
      throw error;
    }
  }
}

/** The error text the old plugin gave where extensions may look for it; vtd's own otherwise. */
function restMessage(error) {
  if (error.code === Codes.NOT_REGISTERED) return `Database not found for extension: ${error.data.extensionId}`;
  if (error.code === Codes.NOT_FOUND && error.data.kind === 'character') return 'Character not found';
  if (error.code === Codes.NOT_FOUND && error.data.kind === 'instance') return 'Instance not found';
  return error.message;
}

/** The request's JSON body: parsed already by SillyTavern's body parser, or read here. */
async function jsonBody(req) {
  if (req.body !== undefined && req.body !== null && typeof req.body === 'object' && !Buffer.isBuffer(req.body)) {
    return req.body;
  }
  if (req.readableEnded) return {}; // consumed by a parser that found no JSON
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  return text.trim() === '' ? {} : JSON.parse(text);
}

function dropUndefined(params) {
  return Object.fromEntries(Object.entries(params).filter(([, value]) => value !== undefined));
}

module.exports = { init, exit, info };
