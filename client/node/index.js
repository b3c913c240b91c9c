'use strict';
/**
 * A SillyTavern server plugin that serves the old valuetracker plugin's REST
 * API from vtd, so that browser extensions written for it keep working
 * unchanged: same routes under /api/plugins/valuetracker, same
 * `x-extension-id` header, same JSON shapes, same statuses (but strings
 * stay strings, and a missing instance's data is a 404). Each request
 * becomes one vtd call (docs/migrating.md has the table).
 *
 * Install: copy index.js, vtd.js and package.json to SillyTavern's
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
 * Each route: [HTTP method, path, vtd method, its params]. A param's source
 * is `header` (the `x-extension-id` header), `:name` (the path), `?name`
 * (the query string), `body.name` (a field of the JSON body) or `body` (the
 * whole body: the data of an override or merge). Params with no value are
 * left out, so that vtd says which one is missing.
 */
const ROUTES = [
  ['post', '/register', 'register', { extensionId: 'header' }],
  ['delete', '/register', 'deregister', { extensionId: 'header' }],
  ['get', '/characters', 'characters.list', { extensionId: 'header' }],
  ['get', '/characters/:id', 'characters.get', { extensionId: 'header', id: ':id' }],
  ['post', '/characters', 'characters.upsert', { extensionId: 'header', id: 'body.id', name: 'body.name' }],
  ['delete', '/characters/:id', 'characters.delete', { extensionId: 'header', id: ':id' }],
  ['get', '/instances', 'instances.list', { extensionId: 'header', characterId: '?characterId' }],
  ['get', '/characters/:characterId/instances', 'instances.list', { extensionId: 'header', characterId: ':characterId' }],
  ['delete', '/characters/:characterId/instances', 'instances.deleteAll', { extensionId: 'header', characterId: ':characterId' }],
  ['get', '/instances/:id', 'instances.get', { extensionId: 'header', id: ':id' }],
  ['post', '/instances', 'instances.upsert', { extensionId: 'header', id: 'body.id', characterId: 'body.characterId', name: 'body.name' }],
  ['delete', '/instances/:id', 'instances.delete', { extensionId: 'header', id: ':id' }],
  ['get', '/instances/:id/data', 'data.get', { extensionId: 'header', id: ':id' }],
  ['post', '/instances/:id/data', 'data.set', { extensionId: 'header', id: ':id', key: 'body.key', value: 'body.value' }],
  ['put', '/instances/:id/data', 'data.set', { extensionId: 'header', id: ':id', key: 'body.key', value: 'body.value' }],
  ['delete', '/instances/:id/data', 'data.clear', { extensionId: 'header', id: ':id' }],
  ['put', '/instances/:id/data/override', 'data.override', { extensionId: 'header', id: ':id', data: 'body' }],
  ['put', '/instances/:id/data/merge', 'data.merge', { extensionId: 'header', id: ':id', data: 'body' }],
  ['put', '/instances/:id/data/remove', 'data.remove', { extensionId: 'header', id: ':id', keys: 'body.keys' }],
  ['get', '/instances/:id/data/:key', 'data.getKey', { extensionId: 'header', id: ':id', key: ':key' }],
  ['delete', '/instances/:id/data/:key', 'data.deleteKey', { extensionId: 'header', id: ':id', key: ':key' }],
  ['get', '/cross-extension/characters/:extensionId', 'cross.characters.list', { extensionId: ':extensionId' }],
  ['get', '/cross-extension/characters/:extensionId/:id', 'cross.characters.get', { extensionId: ':extensionId', id: ':id' }],
  ['get', '/cross-extension/characters/:extensionId/:characterId/instances', 'cross.instances.list', { extensionId: ':extensionId', characterId: ':characterId' }],
  ['get', '/cross-extension/instances/:extensionId/:id', 'cross.instances.get', { extensionId: ':extensionId', id: ':id' }],
  ['get', '/cross-extension/instances/:extensionId/:id/data', 'cross.data.get', { extensionId: ':extensionId', id: ':id' }],
  ['get', '/cross-extension/instances/:extensionId/:id/data/:key', 'cross.data.getKey', { extensionId: ':extensionId', id: ':id', key: ':key' }],
  ['post', '/ping', 'ping', { message: 'body.message' }],
  ['get', '/probe', 'probe', {}],
];

let vtd = null;

/** Register every route on SillyTavern's router for this plugin. */
async function init(router) {
  vtd = new VtdClient();
  // Say in SillyTavern's console whether vtd answers, without holding up its start.
  vtd.call('probe').then(
    ({ version }) => console.log(`[valuetracker] served by vtd ${version} at ${vtd.socket}`),
    (error) => console.warn(`[valuetracker] ${error.message}`),
  );
  for (const [verb, path, method, sources] of ROUTES) {
    router[verb](path, (req, res) => {
      answer(req, res, method, sources).catch((error) => {
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

async function answer(req, res, method, sources) {
  const header = req.get(HEADER);
  if (sources.extensionId === 'header' && !header) {
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
  const fields = body !== null && typeof body === 'object' ? body : {};
  const params = {};
  for (const [name, source] of Object.entries(sources)) {
    let value;
    if (source === 'header') value = header;
    else if (source === 'body') value = body;
    else if (source.startsWith('body.')) value = fields[source.slice('body.'.length)];
    else if (source.startsWith(':')) value = req.params[source.slice(1)];
    else value = req.query[source.slice(1)]; // '?name'
    if (value !== undefined) params[name] = value;
  }
  try {
    res.json(await vtd.call(method, params));
  } catch (error) {
    if (error instanceof VtdRpcError) {
      const status = STATUS.get(error.code) ?? 500;
      res.status(status).json({ error: restMessage(error), code: error.code, data: error.data });
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

module.exports = { init, exit, info };
