'use strict';
/**
 * Writes a database the way the old valuetracker plugin's sql.js releases
 * did: sql.js's own SQLite, their three tables (no cascades, no WAL), every
 * value stored as its JSON text if it is an object (null included) and as
 * String(value) otherwise, and the whole database exported to one file.
 *
 * Usage: node tests/valuetracker_sqljs.js FILE  (the contents as JSON on stdin:
 *   {"characters": [[id, name]], "instances": [[id, characterId, name]],
 *    "values": [[instanceId, key, value]]})
 */

const fs = require('node:fs');
const initSqlJs = require('sql.js');

const TABLES = `
CREATE TABLE characters (
  id TEXT PRIMARY KEY, name TEXT,
  created_at DATETIME DEFAULT CURRENT_TIMESTAMP, updated_at DATETIME DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE instances (
  id TEXT PRIMARY KEY, character_id TEXT NOT NULL, name TEXT,
  created_at DATETIME DEFAULT CURRENT_TIMESTAMP, updated_at DATETIME DEFAULT CURRENT_TIMESTAMP,
  FOREIGN KEY (character_id) REFERENCES characters (id)
);
CREATE TABLE data (
  instance_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT,
  created_at DATETIME DEFAULT CURRENT_TIMESTAMP, updated_at DATETIME DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (instance_id, key),
  FOREIGN KEY (instance_id) REFERENCES instances (id)
);
CREATE INDEX idx_instances_character_id ON instances (character_id);
CREATE INDEX idx_data_instance_id ON data (instance_id);
`;

async function main() {
  const contents = JSON.parse(fs.readFileSync(0, 'utf8'));
  const SQL = await initSqlJs();
  const db = new SQL.Database();
  db.run(TABLES);
  for (const [id, name] of contents.characters) {
    db.run('INSERT INTO characters (id, name) VALUES (?, ?)', [id, name]);
  }
  for (const [id, characterId, name] of contents.instances) {
    db.run('INSERT INTO instances (id, character_id, name) VALUES (?, ?, ?)', [id, characterId, name]);
  }
  for (const [instanceId, key, value] of contents.values) {
    const text = typeof value === 'object' ? JSON.stringify(value) : String(value);
    db.run('INSERT OR REPLACE INTO data (instance_id, key, value) VALUES (?, ?, ?)', [instanceId, key, text]);
  }
  fs.writeFileSync(process.argv[2], db.export());
  db.close();
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
