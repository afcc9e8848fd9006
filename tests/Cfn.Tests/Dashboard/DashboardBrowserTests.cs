using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using Cfn.Tests.Infrastructure;
using Microsoft.Playwright;
using Xunit.Abstractions;
using static Microsoft.Playwright.Assertions;

namespace Cfn.Tests.Dashboard;

/// <summary>
/// The live dashboard (issue 15) in a real browser — Microsoft.Playwright driving Debian's Chromium — against a real
/// <c>cfn up</c> (one for the class, <see cref="DashboardUp"/>), through the DOM contract of DASHBOARD_CONTRACT.md only
/// (its <c>data-testid</c> attributes and endpoints): the page lists the coordinators the API lists; a SIGKILLed
/// coordinator process shows as a death and then a replacement within the detection time; a wait shows in the graph
/// while it lasts; a deadlock made on purpose is highlighted; an action without admin rights is refused on the page and
/// accepted with the token. Every test fails on a console error or warning or an uncaught page error. Screenshots go to
/// the test artifacts (<see cref="BrowserFixture.ArtifactsDirectory"/>); with <c>CFN_UPDATE_SCREENSHOT=1</c> the one of
/// the recovered swarm becomes docs/images/dashboard.png.
/// </summary>
public sealed class DashboardBrowserTests(DashboardUp up, BrowserFixture browser, ITestOutputHelper output)
    : IClassFixture<DashboardUp>, IClassFixture<BrowserFixture>
{
    /// <summary>What the page may take beyond the system itself: a snapshot refresh or two and a busy 2-core machine.</summary>
    private const float Margin = 15_000;

    /// <summary>The swarm of the tests' HTTP agents (not one of cfn up's: no target, nothing scales it).</summary>
    private const string AgentSwarm = "dash-agents";

    private static LocatorAssertionsToBeVisibleOptions Within(float ms) => new() { Timeout = ms };

    private static LocatorAssertionsToHaveCountOptions CountWithin(float ms) => new() { Timeout = ms };

    /// <summary>Opens the dashboard of cfn up and waits until its event stream is connected.</summary>
    private async Task<BrowserPage> OpenDashboardAsync(string name, int width = 1280, int height = 800)
    {
        var page = await browser.OpenAsync(name, width, height);
        try
        {
            IResponse? response;
            try
            {
                response = await page.Page.GotoAsync(up.Url);
            }
            catch (PlaywrightException e)
            {
                throw new InvalidOperationException($"the dashboard did not load from {up.Url} (is it served by this cfn?): {e.Message}", e);
            }

            Assert.NotNull(response);
            Assert.True(response.Status == 200, $"GET / answered {response.Status}: the dashboard is not served");
            await Expect(page.Page.Locator("[data-testid=connection]")).ToContainTextAsync("live", new() { Timeout = 30_000 });
            return page;
        }
        catch
        {
            await page.DisposeAsync();
            throw;
        }
    }

    private static ILocator Row(IPage page, string id) => page.Locator($"[data-testid=participant-row][data-id=\"{id}\"]");

    private static ILocator Edge(IPage page, string from, string to) =>
        page.Locator($"[data-testid=wait-edge][data-from=\"{from}\"][data-to=\"{to}\"]");

    private static ILocator Node(IPage page, string id) => page.Locator($"[data-testid=wait-node][data-id=\"{id}\"]");

    private static ILocator TimelineItem(IPage page, string kind, string mentioning) =>
        page.Locator($"[data-testid=timeline-item][data-kind={kind}]", new() { HasText = mentioning });

    /// <summary>The coordinators (every swarm but the validators' pseudo-swarm) and the validators that <c>GET /api/swarms/status</c> lists.</summary>
    private async Task<(SortedSet<string> Coordinators, SortedSet<string> Validators)> ApiParticipantsAsync()
    {
        var (status, body) = await up.CallAsync(HttpMethod.Get, "/api/swarms/status", token: null);
        Assert.Equal(HttpStatusCode.OK, status);
        var coordinators = new SortedSet<string>(StringComparer.Ordinal);
        var validators = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var swarm in body.GetProperty("swarms").EnumerateArray())
        {
            var into = swarm.GetProperty("swarmId").GetString() == "validators" ? validators : coordinators;
            into.UnionWith(swarm.GetProperty("coordinators").EnumerateArray().Select(c => c.GetString()!));
        }

        return (coordinators, validators);
    }

    /// <summary>Participants as the API and the page list them at one moment.</summary>
    private sealed record Listed((SortedSet<string> Coordinators, SortedSet<string> Validators) Api, SortedSet<string> PageCoordinators, SortedSet<string> PageValidators)
    {
        public override string ToString() =>
            $"API coordinators [{string.Join(", ", Api.Coordinators)}], validators [{string.Join(", ", Api.Validators)}]; " +
            $"page coordinators [{string.Join(", ", PageCoordinators)}], validators [{string.Join(", ", PageValidators)}]";
    }

    private static async Task<SortedSet<string>> PageIdsAsync(IPage page, string kind) =>
        new(await page.Locator($"[data-testid=participant-row][data-kind={kind}]").EvaluateAllAsync<string[]>("rows => rows.map(r => r.dataset.id)"),
            StringComparer.Ordinal);

    /// <summary>Runs <paramref name="test"/>; on failure writes cfn up's last lines and the page's console to the test output.</summary>
    private async Task WithDiagnosticsAsync(BrowserPage page, Func<Task> test)
    {
        try
        {
            await test();
        }
        catch
        {
            output.WriteLine("--- cfn up, last lines ---\n" + up.Run.Tail(40));
            output.WriteLine("--- page console ---\n" + string.Join('\n', page.ConsoleLog));
            throw;
        }
    }

    [Fact]
    public async Task Page_ListsTheCoordinatorsTheApiLists_Live_ReadableWideAndNarrow()
    {
        // The server's CSP (DASHBOARD_CONTRACT.md): the page runs only its own script, so inline handlers could not work.
        using (var index = await up.Api.GetAsync("/"))
        {
            Assert.Equal(HttpStatusCode.OK, index.StatusCode);
            Assert.Contains("script-src 'self'", string.Join(' ', index.Headers.TryGetValues("Content-Security-Policy", out var csp) ? csp : []), StringComparison.Ordinal);
        }

        await using var page = await OpenDashboardAsync("dashboard-list");
        await WithDiagnosticsAsync(page, async () =>
        {
            await Expect(page.Page.Locator("[data-testid=swarm-row][data-swarm=swarm-1]")).ToBeVisibleAsync();

            // The same coordinators, and validators, as the API: read both until they agree (a snapshot may trail a change).
            var seen = await EventuallyAsync(
                async () => new Listed(await ApiParticipantsAsync(), await PageIdsAsync(page.Page, "coordinator"), await PageIdsAsync(page.Page, "validator")),
                l => l.Api.Coordinators.Count >= 2 && l.Api.Coordinators.SetEquals(l.PageCoordinators) && l.Api.Validators.SetEquals(l.PageValidators),
                "the page's participant rows never matched /api/swarms/status", TimeSpan.FromSeconds(30), pollMs: 250, describe: l => l.ToString());
            output.WriteLine(seen.ToString());
            Assert.Equal(2, seen.Api.Validators.Count);

            // Every action is a <button> (keyboard), and no element carries an inline event handler (CSP).
            var actions = await page.Page.Locator("[data-testid^=action-]:not([data-testid=action-result])").EvaluateAllAsync<string[]>("els => els.map(e => e.tagName)");
            Assert.NotEmpty(actions);
            Assert.All(actions, tag => Assert.Equal("BUTTON", tag));
            Assert.Empty(await page.Page.EvaluateAsync<string[]>(
                "() => Array.from(document.querySelectorAll('*')).flatMap(e => Array.from(e.attributes).filter(a => a.name.startsWith('on')).map(a => e.tagName + ' ' + a.name))"));

            var wide = await page.ScreenshotAsync("1280x800");
            Assert.Equal((1280, 800), BrowserPage.PngSize(wide));

            // A phone: sections stack and tables scroll inside their box, so the page itself does not scroll sideways.
            await page.Page.SetViewportSizeAsync(375, 800);
            await Expect(page.Page.Locator("[data-testid=participants]")).ToBeVisibleAsync();
            var overflow = await page.Page.EvaluateAsync<int>("() => document.documentElement.scrollWidth - window.innerWidth");
            Assert.True(overflow <= 1, $"at 375 px the page is {overflow} px wider than the screen");
            Assert.Equal((375, 800), BrowserPage.PngSize(await page.ScreenshotAsync("375x800")));
            output.WriteLine($"screenshots: {wide} and the 375x800 one beside it");
            page.AssertNoConsoleProblems();
        });
    }

    [Fact]
    public async Task Sigkill_OfACoordinatorProcess_ShowsItsDeathThenItsReplacement_WithinTheDetectionTime()
    {
        const string Victim = "coordinator-dash-victim";
        var port = CfnRun.FreePort();
        var environment = DashboardUp.CommonEnvironment();
        environment["REDIS_URL"] = up.Redis.Url;
        environment["HTTP_PORT"] = port.ToString(CultureInfo.InvariantCulture);
        environment["COORDINATOR_ID"] = Victim;
        environment["SWARM_ID"] = "swarm-dash-kill"; // a swarm of its own: nothing scales it, only its replacement joins it
        environment["COORDINATOR_HOST_CAPACITY"] = "1"; // full with the victim: the replacement is not placed on the dead host
        await using var victim = CfnRun.Start(["serve", "--role", "coordinator"], environment);
        await victim.WaitReadyAsync(port, "/health/live");

        await using var page = await OpenDashboardAsync("dashboard-death");
        await WithDiagnosticsAsync(page, async () =>
        {
            await Expect(page.Page.Locator($"[data-testid=participant-row][data-id={Victim}][data-kind=coordinator][data-state=live]"))
                .ToBeVisibleAsync(Within(30_000));

            await victim.SignalAsync("KILL");
            var killed = Stopwatch.StartNew();
            var detection = (float)DashboardUp.DetectionTime.TotalMilliseconds;
            await Expect(TimelineItem(page.Page, "death", Victim).First).ToBeVisibleAsync(Within(detection + Margin));
            output.WriteLine($"death on the page {killed.ElapsedMilliseconds} ms after SIGKILL (detection time {detection} ms)");

            // The replacement: cfn up names it once the swarm acknowledged it; the page shows it as a participant, and its
            // timeline says so.
            var acknowledged = await up.Run.WaitForLineAsync(l => l.Contains("Replacement coordinator acknowledged", StringComparison.Ordinal) &&
                                                                  l.Contains($"old={Victim} ", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
            var replacement = acknowledged.Split(' ').First(t => t.StartsWith("new=", StringComparison.Ordinal))["new=".Length..];
            await Expect(Row(page.Page, replacement)).ToBeVisibleAsync(Within(Margin));
            await Expect(TimelineItem(page.Page, "replacement", Victim).Or(TimelineItem(page.Page, "replacement", replacement)).First)
                .ToBeVisibleAsync(Within(Margin));
            output.WriteLine($"replacement {replacement} on the page {killed.ElapsedMilliseconds} ms after SIGKILL");

            // The victim is no longer shown live (gone, or marked dead); the recovered swarm is the README's picture.
            await Expect(page.Page.Locator($"[data-testid=participant-row][data-id={Victim}][data-state=live]")).ToHaveCountAsync(0);
            var shot = await page.ScreenshotAsync("recovered-1280x800");
            Assert.Equal((1280, 800), BrowserPage.PngSize(shot));
            if (BrowserPage.PublishScreenshot(shot))
            {
                output.WriteLine($"{shot} copied to docs/images/dashboard.png");
            }

            page.AssertNoConsoleProblems();
        });
    }

    [Fact]
    public async Task Wait_OnAPeerThatDoesNotAck_IsAnEdgeOfTheGraph_WhileItLasts()
    {
        await using var waiter = await up.OpenSessionAsync("dash-waiter", AgentSwarm);
        await using var silent = await up.OpenSessionAsync("dash-silent", AgentSwarm);
        await using var page = await OpenDashboardAsync("dashboard-wait");
        await WithDiagnosticsAsync(page, async () =>
        {
            var edge = Edge(page.Page, "dash-waiter", "dash-silent");
            await Expect(edge).ToHaveCountAsync(0);

            // The silent agent never receives, so it never ACKs: the waiter blocks until the test lets it go.
            var sending = waiter.SendAndWaitAsync("dash-silent", timeoutMs: 60_000);
            await EventuallyAsync(async () => (await CfnRun.ShellAsync($"{up.Redis.Cli} get coordinator:activity:dash-waiter")).Contains("dash-silent", StringComparison.Ordinal),
                "the waiter's activity record never named the silent agent (the system, not the page)", TimeSpan.FromSeconds(15), pollMs: 100);

            await Expect(edge).ToHaveCountAsync(1, CountWithin(Margin));
            await Expect(edge).ToHaveAttributeAsync("data-deadlock", "false");
            await Expect(edge.Locator("title").First).ToContainTextAsync("validation");
            await Expect(Node(page.Page, "dash-waiter")).ToHaveCountAsync(1);
            await Expect(Node(page.Page, "dash-silent")).ToHaveCountAsync(1);
            await Expect(Node(page.Page, "dash-waiter")).ToHaveAttributeAsync("data-deadlock", "false");
            await Expect(page.Page.Locator("[data-testid=deadlock-banner]")).ToBeHiddenAsync();
            // A blocking participant can be force-unblocked from its row.
            await Expect(page.Page.Locator("[data-testid=action-force-unblock][data-id=dash-waiter]")).ToBeVisibleAsync();
            await page.ScreenshotAsync("waiting-1280x800");

            // The silent agent takes the signal (that ACKs it): the wait ends, and so does the edge.
            var (received, signal) = await silent.ActAsync("receive", """{"timeoutMs":10000}""");
            Assert.True(received == HttpStatusCode.OK, $"receive: {(int)received} {signal}");
            var (sent, result) = await sending;
            Assert.True(sent == HttpStatusCode.OK, $"send: {(int)sent} {result}");
            Assert.Equal("completed", result.GetProperty("status").GetString());

            await Expect(edge).ToHaveCountAsync(0, CountWithin(Margin));
            await Expect(Node(page.Page, "dash-waiter")).ToHaveCountAsync(0, CountWithin(Margin));
            page.AssertNoConsoleProblems();
        });
    }

    [Fact]
    public async Task Deadlock_MadeOnPurpose_IsHighlighted_AndClearsWhenUnblocked()
    {
        await using var a = await up.OpenSessionAsync("dash-lock-a", AgentSwarm);
        await using var b = await up.OpenSessionAsync("dash-lock-b", AgentSwarm);
        await using var page = await OpenDashboardAsync("dashboard-deadlock");
        await WithDiagnosticsAsync(page, async () =>
        {
            await Expect(page.Page.Locator("[data-testid=deadlock-banner]")).ToBeHiddenAsync();

            // A waits for B and B for A; neither receives, so neither ACKs.
            var aWaits = a.SendAndWaitAsync("dash-lock-b", timeoutMs: 60_000);
            var bWaits = b.SendAndWaitAsync("dash-lock-a", timeoutMs: 60_000);
            // The system sees the cycle (the timeout handler's own check): what follows is the page's part.
            await EventuallyAsync(async () =>
            {
                var (_, deadlocks) = await up.CallAsync(HttpMethod.Get, "/api/deadlocks", token: null);
                var text = deadlocks.ValueKind == JsonValueKind.Undefined ? "" : deadlocks.GetRawText();
                return text.Contains("dash-lock-a", StringComparison.Ordinal) && text.Contains("dash-lock-b", StringComparison.Ordinal);
            }, "GET /api/deadlocks never reported the A <-> B cycle (the system, not the page)", TimeSpan.FromSeconds(20), pollMs: 250);

            await Expect(page.Page.Locator("[data-testid=wait-node][data-id=dash-lock-a][data-deadlock=true]")).ToHaveCountAsync(1, CountWithin(Margin));
            await Expect(page.Page.Locator("[data-testid=wait-node][data-id=dash-lock-b][data-deadlock=true]")).ToHaveCountAsync(1, CountWithin(Margin));
            await Expect(Edge(page.Page, "dash-lock-a", "dash-lock-b")).ToHaveAttributeAsync("data-deadlock", "true");
            await Expect(Edge(page.Page, "dash-lock-b", "dash-lock-a")).ToHaveAttributeAsync("data-deadlock", "true");
            await Expect(page.Page.Locator("[data-testid=deadlock-banner]")).ToBeVisibleAsync();
            await Expect(TimelineItem(page.Page, "deadlock", "dash-lock-a").First).ToBeVisibleAsync(Within(Margin));
            await page.ScreenshotAsync("deadlock-1280x800");

            // Force-unblocking both ends the cycle (the waits end), and the highlight goes with it.
            foreach (var id in new[] { "dash-lock-a", "dash-lock-b" })
            {
                var (status, body) = await up.CallAsync(HttpMethod.Post, $"/api/coordinators/{id}/unblock");
                Assert.True(status == HttpStatusCode.OK, $"unblock {id}: {(int)status} {body}");
            }

            var ended = await Task.WhenAll(aWaits, bWaits).WaitAsync(TimeSpan.FromSeconds(30));
            Assert.All(ended, e => Assert.Equal(HttpStatusCode.OK, e.Status));
            await Expect(page.Page.Locator("[data-testid=deadlock-banner]")).ToBeHiddenAsync(new() { Timeout = Margin });
            await Expect(page.Page.Locator("[data-testid=wait-node][data-deadlock=true]")).ToHaveCountAsync(0, CountWithin(Margin));
            page.AssertNoConsoleProblems();
        });
    }

    [Fact]
    public async Task PauseSpawning_WithoutAdminRights_RefusedOnThePage_WithTheToken_Accepted()
    {
        await using var page = await OpenDashboardAsync("dashboard-admin");
        try
        {
            await WithDiagnosticsAsync(page, async () =>
            {
                var p = page.Page;
                var state = p.Locator("[data-testid=spawning-state]");
                var result = p.Locator("[data-testid=action-result]");
                var dialog = p.Locator("[data-testid=confirm-dialog]");
                await Expect(state).ToContainTextAsync("active");

                // Every action asks first; Escape is "no", and nothing is called.
                await p.Locator("[data-testid=action-pause-spawning]").ClickAsync();
                await Expect(dialog).ToBeVisibleAsync();
                await p.Keyboard.PressAsync("Escape");
                await Expect(dialog).ToBeHiddenAsync();
                await Expect(result).Not.ToContainTextAsync("401");

                // No token (and loopback is not trusted here): the API's 401, shown as it answered.
                await p.Locator("[data-testid=action-pause-spawning]").ClickAsync();
                await Expect(dialog).ToBeVisibleAsync();
                await p.Locator("[data-testid=confirm-yes]").ClickAsync();
                await Expect(result).ToHaveTextAsync(new Regex(@"^\s*401\b"));
                await Expect(result).ToContainTextAsync("UNAUTHORIZED");
                await page.ScreenshotAsync("refused-1280x800");
                await Expect(state).ToContainTextAsync("active");

                // With the admin token typed in: 200, and the next snapshot shows spawning paused.
                await p.Locator("[data-testid=admin-token]").FillAsync(DashboardUp.AdminToken);
                await p.Locator("[data-testid=action-pause-spawning]").ClickAsync();
                await p.Locator("[data-testid=confirm-yes]").ClickAsync();
                await Expect(result).ToHaveTextAsync(new Regex(@"^\s*200\b"));
                await Expect(result).ToContainTextAsync("spawningPaused");
                await Expect(state).ToContainTextAsync("paused", new() { Timeout = Margin });
                await page.ScreenshotAsync("paused-1280x800");

                // And back.
                await p.Locator("[data-testid=action-resume-spawning]").ClickAsync();
                await p.Locator("[data-testid=confirm-yes]").ClickAsync();
                await Expect(result).ToHaveTextAsync(new Regex(@"^\s*200\b.*spawningPaused""?\s*:\s*false"));
                await Expect(state).ToContainTextAsync("active", new() { Timeout = Margin });

                // Chromium logs the refused request as a console error of its own; nothing else may be there.
                page.AssertNoConsoleProblems(BrowserPage.RefusedRequest(401));
            });
        }
        finally
        {
            // The other tests need spawning (a replacement), whatever happened here.
            await up.CallAsync(HttpMethod.Post, "/api/spawning/resume");
        }
    }
}
