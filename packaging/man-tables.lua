-- SPDX-License-Identifier: MIT
-- man-tables.lua - pandoc filter for the manual pages: turns each table into a list of
-- tagged paragraphs (one per row: the first cell as the tag, the others below it, each
-- after its column's heading), which man(7) renders at any terminal width, where tbl(1)
-- tables with long cells overflow narrow terminals.
function Table(tbl)
  local simple = pandoc.utils.to_simple_table(tbl)
  local items = {}
  for _, row in ipairs(simple.rows) do
    local term = pandoc.utils.blocks_to_inlines(row[1])
    local defs = pandoc.List()
    for i = 2, #row do
      local inlines = pandoc.List()
      if #row > 2 then
        local heading = pandoc.utils.stringify(simple.headers[i])
        if heading ~= "" then
          inlines:insert(pandoc.Emph({ pandoc.Str(heading .. ":") }))
          inlines:insert(pandoc.Space())
        end
      end
      inlines:extend(pandoc.utils.blocks_to_inlines(row[i]))
      defs:insert(pandoc.Plain(inlines))
    end
    table.insert(items, { term, { defs } })
  end
  return pandoc.DefinitionList(items)
end
