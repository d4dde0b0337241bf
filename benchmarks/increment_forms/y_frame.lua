-- (y) Not a form to use (it adds nothing): the frame's own work alone (arguments, decay state,
-- prune, trim), what every form pays besides its add.
local function add_all(profiles, members, n) -- luacheck: ignore
end
