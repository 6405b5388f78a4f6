/**
 * A select list that reads each snake_case column under the camelCase name of the
 * field it fills: `developerId` becomes `developer_id AS "developerId"`. Rows then
 * arrive in the shape a store function returns, with no copy field by field. A
 * quoted alias keeps its case on Postgres and on PGlite alike.
 */
export function selectAs<Row>(fields: readonly (keyof Row & string)[]): string {
  return fields
    .map((field) => {
      const column = field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
      return column === field ? column : `${column} AS "${field}"`;
    })
    .join(", ");
}
