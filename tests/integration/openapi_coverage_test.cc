// Every routed endpoint must be documented in api/openapi.yaml (the served document), with its method.
#include <yaml-cpp/yaml.h>

#include <algorithm>

#include <gtest/gtest.h>

#include "api/handlers/system.h"
#include "app/application.h"
#include "support/test_env.h"

namespace analytics::testing {
namespace {

TEST(OpenApiCoverageTest, EveryRoutedEndpointIsDocumented) {
  TempDir dir;
  auto config = config::LoadConfigFromText(
      config::DefaultConfigYaml(), std::string("storage:\n  data_dir: ") + dir.path().string() +
                                       "\napi_server:\n  port: 0\n  host: 127.0.0.1\n",
      [](std::string_view) { return std::nullopt; });
  ASSERT_OK(config);
  app::Application application(std::move(config).value());
  ASSERT_OK(application.Start());
  const auto routes = application.Routes();
  ASSERT_GE(routes.size(), 9u);

  YAML::Node document = YAML::Load(std::string(api::OpenApiYaml()));
  ASSERT_TRUE(document["openapi"]) << "not an OpenAPI document";
  ASSERT_TRUE(document["paths"].IsMap());
  for (const auto& [method, path] : routes) {
    std::string lower = method;
    std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
    YAML::Node item = document["paths"][path];
    EXPECT_TRUE(item && item.IsMap()) << "path missing from api/openapi.yaml: " << path;
    if (item && item.IsMap()) {
      EXPECT_TRUE(item[lower]) << "method missing from api/openapi.yaml: " << method << " " << path;
    }
  }
  // And nothing documented that does not exist.
  for (const auto& path_entry : document["paths"]) {
    const std::string path = path_entry.first.as<std::string>();
    for (const auto& operation : path_entry.second) {
      std::string method = operation.first.as<std::string>();
      if (method == "parameters" || method == "summary" || method == "description") continue;
      std::transform(method.begin(), method.end(), method.begin(), ::toupper);
      EXPECT_TRUE(std::find(routes.begin(), routes.end(), std::make_pair(method, path)) != routes.end())
          << "documented but not routed: " << method << " " << path;
    }
  }
  application.Stop();
}

}  // namespace
}  // namespace analytics::testing
