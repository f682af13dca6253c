// Report endpoints (docs/reports.md): definitions (GET list and item: platform_admin, marketing_manager; POST, PUT,
// DELETE: platform_admin), instances (POST: platform_admin, marketing_manager, answering 202; GET, DELETE
// (cancel) and download: the instance's owner or a platform_admin, 403 for everyone else).
#pragma once

#include "api/router.h"
#include "reports/report_service.h"

namespace analytics::api {

void AddReportRoutes(Router& router, reports::ReportService& reports);

}  // namespace analytics::api
