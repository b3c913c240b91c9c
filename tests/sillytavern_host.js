'use strict';
/**
 * Loads a server plugin the way SillyTavern does (an Express router of its
 * own, mounted under /api/plugins/<id>), on a free localhost port, and
 * prints that port. `--raw` leaves out the JSON body parser, so the plugin
 * must read bodies itself. SIGTERM calls the plugin's exit().
 *
 * Usage: node tests/sillytavern_host.js PLUGIN_DIR [--raw]
 */

const path = require('node:path');
const express = require('express');

async function main() {
  const plugin = require(path.resolve(process.argv[2]));
  const app = express();
  if (!process.argv.includes('--raw')) app.use(express.json({ limit: '200mb' }));
  const router = express.Router();
  await plugin.init(router);
  app.use(`/api/plugins/${plugin.info.id}`, router);
  const server = app.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
  process.on('SIGTERM', async () => {
    await plugin.exit();
    server.close();
  });
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
