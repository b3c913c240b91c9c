'use strict';
/**
 * A tour of vtd from Node.js, as a SillyTavern server plugin would use it.
 * Run it against a running vtd: `node client/node/tour.js [SOCKET]`.
 */

const { Codes, VtdClient, VtdRpcError } = require('./vtd.js');

async function main() {
  const vtd = new VtdClient({ socket: process.argv[2] });
  try {
    const tracker = vtd.extension('tracker');
    await tracker.call('register');
    await tracker.call('characters.upsert', { id: 'alice', name: 'Alice' });
    await tracker.call('instances.upsert', { id: 'chat-1', characterId: 'alice' });

    // Acknowledged means on disk; a string stays a string.
    await tracker.call('data.set', { id: 'chat-1', key: 'hp', value: '123' });
    const hp = await tracker.call('data.getKey', { id: 'chat-1', key: 'hp' });
    console.log(`hp: ${JSON.stringify(hp.hp)} (${typeof hp.hp})`);

    // Concurrent calls share the connection.
    await Promise.all(
      Array.from({ length: 100 }, (_, turn) =>
        tracker.call('data.set', { id: 'chat-1', key: `turn-${turn}`, value: { turn } }),
      ),
    );
    const data = await tracker.call('data.get', { id: 'chat-1' });
    console.log(`keys: ${Object.keys(data).length}`);

    // Another extension may read tracker's data, never write it.
    const alice = await vtd.call('cross.characters.get', { extensionId: 'tracker', id: 'alice' });
    console.log(`cross read: ${alice.character.name} has ${alice.instances.length} instance(s)`);

    // Errors carry a code to act on and data naming what is at fault.
    try {
      await tracker.call('data.getKey', { id: 'chat-1', key: 'mana' });
    } catch (error) {
      if (!(error instanceof VtdRpcError) || error.code !== Codes.NOT_FOUND) throw error;
      console.log(`not found: ${error.data.kind} ${error.data.id}`);
    }
    try {
      await tracker.call('data.set', { id: 'chat-1', key: 'hp' });
    } catch (error) {
      if (!(error instanceof VtdRpcError) || error.code !== Codes.INVALID_PARAMS) throw error;
      console.log(`invalid params: ${error.data.field} ${error.data.reason}`);
    }
  } finally {
    vtd.close();
  }
}

main().catch((error) => {
  console.error(`${error.name}: ${error.message}`);
  process.exitCode = 1;
});
