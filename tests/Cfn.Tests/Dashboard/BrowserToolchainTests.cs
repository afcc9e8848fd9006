using System.Text;
using Cfn.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Playwright;
using Xunit.Abstractions;
using static Microsoft.Playwright.Assertions;

namespace Cfn.Tests.Dashboard;

/// <summary>
/// The browser toolchain on its own, before any dashboard: Playwright's driver (the node bundled in the NuGet package)
/// runs offline, drives Debian's Chromium, and a page served by a real Kestrel app on loopback is loaded with the
/// dashboard's Content-Security-Policy, runs its external script, receives Server-Sent Events and fetches JSON; the
/// console recorder sees nothing wrong there, and does see errors, warnings, uncaught exceptions and a refused fetch on a
/// page that makes them (so a test's "no console errors" is not true for want of listening).
/// </summary>
public sealed class BrowserToolchainTests(BrowserFixture browser, ITestOutputHelper output) : IClassFixture<BrowserFixture>
{
    /// <summary>The CSP the dashboard's server sends (DASHBOARD_CONTRACT.md).</summary>
    private const string Csp = "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'";

    private const string Page = """
        <!doctype html>
        <html lang="en">
        <head>
          <meta charset="utf-8">
          <title>cfn toolchain check</title>
          <link rel="stylesheet" href="/app.css">
          <script src="/app.js" defer></script>
        </head>
        <body>
          <h1 data-testid="hello">Hello from Kestrel</h1>
          <p>connection: <span data-testid="connection">connecting</span></p>
          <p data-testid="snapshot"></p>
          <p data-testid="fetched"></p>
          <button data-testid="refused" type="button">call a refused endpoint</button>
          <button data-testid="noisy" type="button">log and throw</button>
          <p data-testid="result"></p>
        </body>
        </html>
        """;

    private const string Script = """
        const events = new EventSource('/events');
        events.addEventListener('snapshot', e => {
          document.querySelector('[data-testid=connection]').textContent = 'live';
          document.querySelector('[data-testid=snapshot]').textContent = 'participants: ' + JSON.parse(e.data).participants.length;
        });
        events.addEventListener('error', () => { document.querySelector('[data-testid=connection]').textContent = 'reconnecting'; });
        fetch('/api/data').then(r => r.json()).then(d => { document.querySelector('[data-testid=fetched]').textContent = d.message; });
        document.querySelector('[data-testid=refused]').addEventListener('click', async () => {
          const r = await fetch('/api/refused', { method: 'POST' });
          document.querySelector('[data-testid=result]').textContent = r.status + ' ' + await r.text();
        });
        document.querySelector('[data-testid=noisy]').addEventListener('click', () => {
          console.warn('a warning from the page');
          console.error('an error from the page');
          setTimeout(() => { throw new Error('an uncaught error from the page'); }, 0);
        });
        """;

    /// <summary>A favicon, as the dashboard's server must have one: Chromium asks for /favicon.ico by itself, and a 404 there is a console error.</summary>
    private const string Icon = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="8" r="7" fill="#234"/></svg>""";

    private static async Task<TestWebApp> ServeAsync(bool favicon = true) => await TestWebApp.StartAsync(app =>
    {
        if (favicon)
        {
            app.MapGet("/favicon.ico", () => Results.Content(Icon, "image/svg+xml"));
        }

        app.Use(async (context, next) =>
        {
            context.Response.Headers.ContentSecurityPolicy = Csp;
            await next(context);
        });
        app.MapGet("/", () => Results.Content(Page, "text/html; charset=utf-8"));
        app.MapGet("/app.js", () => Results.Content(Script, "text/javascript; charset=utf-8"));
        app.MapGet("/app.css", () => Results.Content("body { font-family: sans-serif; } h1 { color: #234; }", "text/css; charset=utf-8"));
        app.MapGet("/api/data", () => Results.Json(new { message = "fetched from the API" }));
        app.MapPost("/api/refused", () => Results.Json(new { error = "admin rights needed", code = "UNAUTHORIZED", field = (string?)null }, statusCode: 401));
        app.MapGet("/events", async (HttpContext context) =>
        {
            context.Response.ContentType = "text/event-stream";
            await context.Response.WriteAsync("event: snapshot\ndata: {\"participants\":[{\"id\":\"coordinator-0\"},{\"id\":\"coordinator-1\"}]}\n\n", Encoding.UTF8,
                context.RequestAborted);
            await context.Response.Body.FlushAsync(context.RequestAborted);
            try
            {
                await Task.Delay(Timeout.Infinite, context.RequestAborted);
            }
            catch (OperationCanceledException)
            {
                // the page went away
            }
        });
    });

    [Fact]
    public async Task Chromium_LoadsAKestrelPage_WithCspScriptSseAndFetch_NoConsoleErrors()
    {
        await using var web = await ServeAsync();
        await using var page = await browser.OpenAsync("toolchain");

        var response = await page.Page.GotoAsync(web.Loopback.BaseAddress!.ToString());
        Assert.NotNull(response);
        Assert.Equal(200, response.Status);
        await Expect(page.Page.Locator("[data-testid=hello]")).ToHaveTextAsync("Hello from Kestrel");
        await Expect(page.Page.Locator("[data-testid=connection]")).ToHaveTextAsync("live", new() { Timeout = 15_000 });
        await Expect(page.Page.Locator("[data-testid=snapshot]")).ToHaveTextAsync("participants: 2");
        await Expect(page.Page.Locator("[data-testid=fetched]")).ToHaveTextAsync("fetched from the API");
        Assert.Equal("rgb(34, 51, 68)", await page.Page.Locator("h1").EvaluateAsync<string>("e => getComputedStyle(e).color"));

        var shot = await page.ScreenshotAsync("loaded");
        Assert.Equal((1280, 800), BrowserPage.PngSize(shot));
        output.WriteLine($"screenshot: {shot}; browser: {browser.Browser.Version}");
        page.AssertNoConsoleProblems();
    }

    [Fact]
    public async Task ConsoleRecorder_SeesErrorsWarningsUncaughtExceptionsAndARefusedFetch()
    {
        await using var web = await ServeAsync(favicon: false);
        await using var page = await browser.OpenAsync("toolchain-noisy", 375, 800);
        await page.Page.GotoAsync(web.Loopback.BaseAddress!.ToString());
        await Expect(page.Page.Locator("[data-testid=connection]")).ToHaveTextAsync("live", new() { Timeout = 15_000 });
        // Chromium asks for /favicon.ico by itself: a server without one gets a console error on every page load.
        await EventuallyAsync(() => page.Problems.Any(p => BrowserPage.RefusedRequest(404)(p) && p.Contains("/favicon.ico", StringComparison.Ordinal)),
            "no console error for the missing /favicon.ico");
        page.AssertNoConsoleProblems(p => p.Contains("/favicon.ico", StringComparison.Ordinal));

        await page.Page.Locator("[data-testid=refused]").ClickAsync();
        await Expect(page.Page.Locator("[data-testid=result]")).ToContainTextAsync("401 {\"error\":\"admin rights needed\"");
        await page.Page.Locator("[data-testid=noisy]").ClickAsync();
        await EventuallyAsync(() => page.Problems.Any(p => p.StartsWith("pageerror:", StringComparison.Ordinal)), "the uncaught error was not recorded");

        foreach (var line in page.ConsoleLog)
        {
            output.WriteLine(line);
        }

        Assert.Contains(page.Problems, p => p.StartsWith("warning: a warning from the page", StringComparison.Ordinal));
        Assert.Contains(page.Problems, p => p.StartsWith("error: an error from the page", StringComparison.Ordinal));
        Assert.Contains(page.Problems, p => p.Contains("an uncaught error from the page", StringComparison.Ordinal));
        // Chromium logs a refused request as a console error of its own: a test that expects a 401 must allow that line.
        Assert.Contains(page.Problems, p => BrowserPage.RefusedRequest(401)(p));
        Assert.Equal((375, 800), BrowserPage.PngSize(await page.ScreenshotAsync("narrow")));
        Assert.Throws<Xunit.Sdk.TrueException>(() => page.AssertNoConsoleProblems());
    }
}
