#pragma once

#include <vector>

#include "common/pg/pg.h"

namespace tidemark::writer {

/// The store's schema, owned by the timestream-writer and applied at its start-up.
/// Append new migrations; never edit one that has shipped.
const std::vector<pg::Migration>& SchemaMigrations();

/// The role the query service and Grafana connect as (or are granted): SELECT only.
inline constexpr const char* kReaderRole = "tidemark_reader";

}  // namespace tidemark::writer
